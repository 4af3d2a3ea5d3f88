"""What a labelled set's images and boxes look like, and how far two sets are apart.

Per image (on the 8-bit luma, OpenCV's BT.601 grey): brightness, RMS contrast, sharpness
(variance of the Laplacian), a noise estimate and JPEG blockiness; per set: a pixel histogram
per colour channel; per ground-truth box: relative area and aspect; per image: objects; per
class: box counts. Two sets are compared statistic by statistic with the Wasserstein (earth
mover's) distance, in the statistic's own units and divided by the pooled standard deviation of
both sets (``normalized``), so statistics of different units can be ranked: "the real
brightness is 2 standard deviations away" is comparable with "the real sharpness is 0.3 away".
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.stats import wasserstein_distance
from tqdm import tqdm

from .annotations import LabelledSet
from .training_data import read_rgb

log = logging.getLogger(__name__)

# name -> (unit, what it measures); the order is the order of the report's tables.
IMAGE_STATISTICS: dict[str, tuple[str, str]] = {
    'brightness': ('grey level 0-255', 'mean luma of the image'),
    'contrast': ('grey level 0-255', 'RMS contrast: standard deviation of the luma'),
    'sharpness': ('grey level^2', 'variance of the Laplacian of the luma (focus, blur, detail)'),
    'noise': ('grey level', "sensor noise sigma, Immerkaer's estimate (also falls with blur)"),
    'blockiness': ('ratio', 'luma steps on the 8x8 JPEG grid over steps elsewhere (1 = none)'),
}
BOX_STATISTICS: dict[str, tuple[str, str]] = {
    'box_area': ('fraction of the image', 'ground-truth box area / image area'),
    'box_aspect': ('width / height', 'ground-truth box aspect ratio'),
    'objects_per_image': ('boxes', 'ground-truth boxes per image'),
}
CHANNELS = ('red', 'green', 'blue')
COLOUR_STATISTICS = {f'colour_{c}': ('channel level 0-255', f'{c} pixel values over the whole set')
                     for c in CHANNELS}
STATISTICS = {**IMAGE_STATISTICS, **COLOUR_STATISTICS, **BOX_STATISTICS}
JPEG_BLOCK = 8
# Immerkaer (1996), "Fast noise variance estimation": this kernel cancels image structure up to
# second order, what is left is noise.
NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


@dataclass
class SetStatistics:
    values: dict[str, np.ndarray]  # per-image and per-box statistics
    colour: np.ndarray  # [3, 256] pixel counts per channel (R, G, B)
    class_counts: dict[str, int]
    unreadable: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        """mean, median, 5th and 95th percentile per statistic (colour: of the pixel values)."""
        out = {}
        for name in STATISTICS:
            if name in COLOUR_STATISTICS:
                counts = self.colour[CHANNELS.index(name.removeprefix('colour_'))]
                cumulative = np.cumsum(counts) / max(counts.sum(), 1)
                def level(q: float, cumulative: np.ndarray = cumulative) -> float:
                    return float(np.searchsorted(cumulative, q))
                mean = float((np.arange(256) * counts).sum() / max(counts.sum(), 1))
                out[name] = {'mean': round(mean, 4), 'median': level(0.5), 'p5': level(0.05),
                             'p95': level(0.95)}
            else:
                v = self.values[name]
                out[name] = ({'mean': round(float(v.mean()), 4), 'median': round(float(np.median(v)), 4),
                              'p5': round(float(np.percentile(v, 5)), 4),
                              'p95': round(float(np.percentile(v, 95)), 4)} if v.size else
                             {'mean': None, 'median': None, 'p5': None, 'p95': None})
        return out


def image_statistics(rgb: np.ndarray) -> dict[str, float]:
    """The :data:`IMAGE_STATISTICS` of one RGB uint8 image."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    height, width = grey.shape
    residual = cv2.filter2D(grey, cv2.CV_32F, NOISE_KERNEL)[1:-1, 1:-1]
    noise = float(np.sqrt(np.pi / 2) * np.abs(residual).sum() / (6 * (width - 2) * (height - 2)))
    return {'brightness': float(grey.mean()), 'contrast': float(grey.std()),
            'sharpness': float(cv2.Laplacian(grey, cv2.CV_32F).var()), 'noise': noise,
            'blockiness': blockiness(grey)}


def blockiness(grey: np.ndarray) -> float:
    """Mean absolute luma step across 8x8 block borders over the mean step inside blocks: JPEG
    at low quality leaves visible block edges (> 1); an uncompressed or gently compressed image
    stays near 1."""
    steps_x = np.abs(np.diff(grey, axis=1))  # column j: between pixels j and j + 1
    steps_y = np.abs(np.diff(grey, axis=0))
    border_x = (np.arange(steps_x.shape[1]) + 1) % JPEG_BLOCK == 0
    border_y = (np.arange(steps_y.shape[0]) + 1) % JPEG_BLOCK == 0
    across = np.concatenate([steps_x[:, border_x].ravel(), steps_y[border_y].ravel()])
    inside = np.concatenate([steps_x[:, ~border_x].ravel(), steps_y[~border_y].ravel()])
    if not across.size or inside.mean() == 0:
        return 1.0  # smaller than a block, or flat: no evidence either way
    return float(across.mean() / inside.mean())


def set_statistics(labelled: LabelledSet, classes: Sequence[str], desc: str, progress: bool = True
                   ) -> SetStatistics:
    """Statistics of every image and box of ``labelled`` (labels index ``classes``)."""
    per_image: dict[str, list[float]] = {name: [] for name in IMAGE_STATISTICS}
    colour = np.zeros((3, 256), np.int64)
    unreadable = []
    for sample in tqdm(labelled.samples, desc=desc, unit='img', disable=not progress):
        rgb = read_rgb(str(sample.image))
        if rgb is None:
            log.warning('%s: unreadable image, left out of the statistics', sample.image)
            unreadable.append(str(sample.image))
            continue
        for name, value in image_statistics(rgb).items():
            per_image[name].append(value)
        for c in range(3):
            colour[c] += np.bincount(rgb[..., c].ravel(), minlength=256)
    boxes = [(s.boxes, s.width * s.height) for s in labelled.samples]
    sizes = np.concatenate([b[:, 2:] - b[:, :2] for b, _ in boxes]).reshape(-1, 2)
    areas = np.concatenate([np.prod(b[:, 2:] - b[:, :2], axis=1) / a for b, a in boxes])
    values = {name: np.asarray(v, np.float64) for name, v in per_image.items()}
    values['box_area'] = areas.astype(np.float64)
    values['box_aspect'] = (sizes[:, 0] / sizes[:, 1]).astype(np.float64)
    values['objects_per_image'] = np.array([len(s.labels) for s in labelled.samples], np.float64)
    counts = Counter(int(label) for s in labelled.samples for label in s.labels)
    return SetStatistics(values, colour, {name: counts.get(i, 0) for i, name in enumerate(classes)},
                         unreadable)


def _distance(a: np.ndarray, b: np.ndarray, wa: np.ndarray | None = None, wb: np.ndarray | None = None
              ) -> dict[str, float | None]:
    if not a.size or not b.size or (wa is not None and (wa.sum() == 0 or wb.sum() == 0)):
        return {'wasserstein': None, 'normalized': None}
    w = float(wasserstein_distance(a, b, wa, wb))
    values = np.concatenate([a, b])
    weights = None if wa is None else np.concatenate([wa / wa.sum(), wb / wb.sum()])
    mean = np.average(values, weights=weights)
    spread = float(np.sqrt(np.average((values - mean) ** 2, weights=weights)))
    # Identical sets give exactly 0; a spread of 0 means both sets hold one and the same value.
    return {'wasserstein': round(w, 6), 'normalized': round(w / spread, 6) if spread > 0 else 0.0}


def distances(a: SetStatistics, b: SetStatistics) -> dict[str, dict[str, float | None]]:
    """Wasserstein distance per statistic, raw and over the pooled standard deviation."""
    out = {}
    levels = np.arange(256, dtype=np.float64)
    for name in STATISTICS:
        if name in COLOUR_STATISTICS:
            c = CHANNELS.index(name.removeprefix('colour_'))
            out[name] = _distance(levels, levels, a.colour[c].astype(np.float64),
                                  b.colour[c].astype(np.float64))
        else:
            out[name] = _distance(a.values[name], b.values[name])
    return out


def class_frequency_distance(a: dict[str, int], b: dict[str, int]) -> float:
    """Total variation distance of the two class frequency distributions: 0 = same mix of
    classes, 1 = no class in common."""
    pa = np.array([a[k] for k in a], np.float64)
    pb = np.array([b[k] for k in a], np.float64)
    return round(0.5 * float(np.abs(pa / max(pa.sum(), 1) - pb / max(pb.sum(), 1)).sum()), 6)


def largest_shifts(found: dict[str, dict[str, float | None]]) -> list[str]:
    """Statistic names, largest normalized distance first (statistics without one last)."""
    return sorted(found, key=lambda n: -(found[n]['normalized'] or 0.0))
