"""Preprocessing as torch ops, for the torch_cuda backend (runs on the GPU there, on the CPU in
tests). Same geometry and arithmetic as ``preprocess.Preprocessor``: bilinear resize with
half-pixel centres, rounded to uint8 values like OpenCV's, pad, (p / 255 - mean) / std.

Five kernels per frame for an RGB camera: to float planes, resize, round, scale and shift, copy
into the letterbox canvas (whose border is filled once, already normalised). Channel reordering,
where needed, happens after the resize, on the small image.
"""

from __future__ import annotations

from typing import Any

from ..bundle import InputSpec
from ..preprocess import Transform

IDENTITY = (0, 1, 2)


class TorchPreprocess:
    """HxWxC uint8 image tensor -> [1, ...] network input in ``dtype``, for one image size. The
    result is this object's buffer, overwritten by the next call."""

    def __init__(self, spec: InputSpec, transform: Transform, rgb_channels: tuple[int, int, int],
                 dtype: Any, device: Any) -> None:
        import torch
        self.spec = spec
        self.transform = transform
        order = tuple(rgb_channels if spec.color == 'RGB' else rgb_channels[::-1])
        self._order = torch.tensor(order, device=device)
        self._identity = order == IDENTITY
        std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        # (p / 255 - mean) / std == p * gain + offset, one fused multiply-add per value
        self._gain = 1.0 / (255.0 * std)
        self._offset = -mean / std
        border = float(spec.pad_value) * self._gain + self._offset
        self._canvas = border.expand(1, 3, spec.height, spec.width).to(dtype).contiguous()
        t = transform
        self._inside = self._canvas[:, :, t.pad_y:t.pad_y + t.resized_height,
                                    t.pad_x:t.pad_x + t.resized_width]

    def __call__(self, image: Any) -> Any:
        import torch
        import torch.nn.functional as F
        t = self.transform
        x = image.permute(2, 0, 1).unsqueeze(0).float()
        x = F.interpolate(x, size=(t.resized_height, t.resized_width), mode='bilinear',
                          align_corners=False, antialias=False)
        if not (self._identity and image.shape[2] == 3):  # BGR, RGBA, mono: the network's channels
            x = x.index_select(1, self._order)
        # Bilinear weights are a convex combination, so values stay within 0..255: no clamp.
        self._inside.copy_(torch.addcmul(self._offset, x.round_(), self._gain))
        if self.spec.layout == 'NHWC':
            return self._canvas.permute(0, 2, 3, 1).contiguous()
        return self._canvas
