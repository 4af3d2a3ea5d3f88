"""Training targets for :mod:`centernet`, computed per image in the data loader workers (numpy).

* ``heat`` [C, H/4, W/4]: an elliptical Gaussian per object (TTFNet, alpha 0.54), exactly 1 at
  the output location holding the box centre.
* ``box`` [4, H/4, W/4]: the object's x1, y1, x2, y2 (network-input pixels) at every location of
  its regression Gaussian (beta 0.54), ``box_weight`` [H/4, W/4] the Gaussian normalised per
  object and scaled by log(area), so large objects do not drown small ones.

Objects are drawn largest first; where two overlap, the smaller one owns the box locations.
"""

from __future__ import annotations

import numpy as np

from .centernet import STRIDE

ALPHA = 0.54  # heatmap Gaussian size relative to the box
BETA = 0.54  # regression area relative to the box


def _gaussian(dx: np.ndarray, dy: np.ndarray, sx: float, sy: float) -> np.ndarray:
    return np.exp(-(dx * dx) / (2 * sx * sx) - (dy * dy) / (2 * sy * sy))


def encode(boxes: np.ndarray, labels: np.ndarray, num_classes: int, height: int, width: int
           ) -> dict[str, np.ndarray]:
    """Targets for one image; ``boxes`` [N, 4] in network-input pixels."""
    fh, fw = height // STRIDE, width // STRIDE
    heat = np.zeros((num_classes, fh, fw), np.float32)
    box = np.zeros((4, fh, fw), np.float32)
    weight = np.zeros((fh, fw), np.float32)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in np.argsort(-areas, kind='stable'):
        x1, y1, x2, y2 = boxes[i] / STRIDE
        cx = int(np.clip((x1 + x2) / 2, 0, fw - 1))
        cy = int(np.clip((y1 + y2) / 2, 0, fh - 1))
        w, h = max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)
        sx, sy = max(ALPHA * w / 6, 0.3), max(ALPHA * h / 6, 0.3)
        rx, ry = int(np.ceil(3 * sx)), int(np.ceil(3 * sy))
        xa, xb, ya, yb = max(cx - rx, 0), min(cx + rx + 1, fw), max(cy - ry, 0), min(cy + ry + 1, fh)
        dy, dx = np.mgrid[ya - cy:yb - cy, xa - cx:xb - cx].astype(np.float32)
        patch = heat[labels[i], ya:yb, xa:xb]
        np.maximum(patch, _gaussian(dx, dy, sx, sy), out=patch)
        # Regression locations: inside the beta-shrunk box around the centre.
        bx, by = max(BETA * w / 2, 0.5), max(BETA * h / 2, 0.5)
        inside = (np.abs(dx) <= bx) & (np.abs(dy) <= by)
        inside[cy - ya, cx - xa] = True
        g = _gaussian(dx, dy, max(BETA * w / 6, 0.3), max(BETA * h / 6, 0.3)) * inside
        g *= np.log(max(areas[i], 2.0)) / g.sum()
        sel = g > 0
        weight[ya:yb, xa:xb][sel] = g[sel]
        box[:, ya:yb, xa:xb][:, sel] = boxes[i][:, None]
    return {'heat': heat, 'box': box, 'box_weight': weight}
