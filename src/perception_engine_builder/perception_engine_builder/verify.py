"""Does a converted model still detect what the original did? Compare it with ONNX Runtime.

Both backends get the same frames: each frame goes through the node's preprocessing once and the
same tensor is fed to both (a backend that preprocesses on its GPU gets the image instead). The
report gives the largest absolute output difference and the detection-level effect: COCO mAP of
each against the ground truth, decoded by the node's decoder, and the drop. The build fails when
the drop exceeds the precision's limit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from perception_core.backends import Backend
from perception_core.bundle import Bundle
from perception_core.coco_metrics import Metrics, evaluate
from perception_core.decode import Detections, Thresholds, decode
from perception_core.preprocess import Preprocessor, Transform
from perception_trainer.annotations import Sample

log = logging.getLogger(__name__)
# Largest mAP@[.5:.95] drop a build may show; TensorRT's fp32 uses TF32 kernels, hence not zero.
MAX_MAP_DROP = {'fp32': 0.01, 'fp16': 0.01, 'int8': 0.03}
RGB = (0, 1, 2)
BGR = (2, 1, 0)
# Synthetic evaluation scenes use a seed of their own, never one a training recipe uses.
EVAL_SEED = 20241205
EVAL_FRAMES = 100
DIFF_TOLERANCE = 1e-3      # absolute, plus the same relative to the reference value


class VerifyError(RuntimeError):
    """A verification that cannot run (no frames, a backend that fails); names the cause."""


@dataclass(frozen=True)
class EvalFrame:
    """One image (HxWx3 uint8, R/G/B at ``rgb_channels``) and its ground truth."""
    truth: Sample
    pixels: np.ndarray
    rgb_channels: tuple[int, int, int]


@dataclass
class VerifyReport:
    reference: str
    candidate: str
    precision: str
    frames: int
    max_abs_diff: dict[str, float]
    mean_abs_diff: dict[str, float]
    # Share of values off by more than DIFF_TOLERANCE. In-graph peak suppression (a max-pool
    # equality) turns a rounding difference into a score appearing or vanishing, so one flip makes
    # the max large while this share, and the mAP, show whether it matters.
    differing_fraction: dict[str, float]
    reference_map: dict[str, float]        # {"map": mAP@[.5:.95], "map50": mAP@.5}, by pycocotools
    candidate_map: dict[str, float]
    map_drop: float
    allowed_drop: float
    passed: bool
    detections: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        worst = max(self.max_abs_diff.values(), default=0.0)
        return (f'{"PASSED" if self.passed else "FAILED"}: {self.candidate} vs {self.reference} on '
                f'{self.frames} frames: max abs diff {worst:.3g}, mAP {self.candidate_map["map"]:.4f} vs '
                f'{self.reference_map["map"]:.4f} (drop {self.map_drop:+.4f}, allowed {self.allowed_drop})')


def dataset_frames(path: Path, bundle: Bundle, limit: int) -> list[EvalFrame]:
    """Frames of a labelled data set (COCO, KITTI or lesson format, as the trainer reads them)."""
    from perception_trainer.readers import load_dataset
    labelled = load_dataset(path, classes=bundle.classes)
    frames = []
    for sample in labelled.samples[:limit]:
        pixels = cv2.imread(str(sample.image), cv2.IMREAD_COLOR)
        if pixels is None:
            log.warning('%s: unreadable image, not used for verification', sample.image)
            continue
        frames.append(EvalFrame(sample, pixels, BGR))
    if not frames:
        raise VerifyError(f'{path}: no readable labelled images for verification')
    return frames


def synthetic_frames(bundle: Bundle, count: int = EVAL_FRAMES, seed: int = EVAL_SEED,
                     size: tuple[int, int] = (640, 480)) -> list[EvalFrame]:
    """Camera-sized scenes of the bundle's classes from the project's synthetic generator."""
    from perception_core.synth import render_scene
    index = {name: i for i, name in enumerate(bundle.classes)}
    frames = []
    for i in range(count):
        scene = render_scene(seed, i, size[0], size[1], bundle.classes)
        boxes = np.array([[b.x1, b.y1, b.x2, b.y2] for b in scene.boxes], np.float32).reshape(-1, 4)
        labels = np.array([index[b.class_name] for b in scene.boxes], np.int64)
        truth = Sample(Path(f'synthetic/{seed}/{i:06d}'), size[0], size[1], boxes, labels)
        frames.append(EvalFrame(truth, scene.image, RGB))
    return frames


def infer_frame(backend: Backend, preprocessor: Preprocessor, frame: EvalFrame,
                tensor: np.ndarray | None = None) -> tuple[list[np.ndarray], Transform]:
    """The network outputs for one frame; ``tensor`` reuses an already preprocessed input."""
    if backend.takes_images:
        return backend.infer_image(frame.pixels, frame.rgb_channels)
    transform = preprocessor.transform_for(*frame.pixels.shape[:2])
    if tensor is None:
        tensor, transform = preprocessor(frame.pixels, frame.rgb_channels)
    return backend.infer(tensor), transform


def _map(metrics: Metrics) -> dict[str, float]:
    return {'map': round(metrics.map, 6), 'map50': round(metrics.map50, 6)}


def allowed_drop(precision: str, override: float | None = None) -> float:
    """The largest mAP drop a build at this precision may show (``--allow-accuracy-drop`` overrides)."""
    return override if override is not None else MAX_MAP_DROP[precision]


def verify(reference: Backend, candidate: Backend, bundle: Bundle, frames: Sequence[EvalFrame],
           precision: str, *, thresholds: Thresholds | None = None, allow_drop: float | None = None,
           progress: bool = True) -> VerifyReport:
    """Run both backends on every frame and judge the candidate against the reference."""
    if not frames:
        raise VerifyError('no frames to verify on')
    thresholds = thresholds or Thresholds.resolve(bundle.postprocess)
    preprocessor = Preprocessor(bundle.input)
    names = list(bundle.output.names)
    max_diff = dict.fromkeys(names, 0.0)
    sum_diff = dict.fromkeys(names, 0.0)
    differing = dict.fromkeys(names, 0)
    values = dict.fromkeys(names, 0)
    found: dict[str, list[Detections]] = {'reference': [], 'candidate': []}
    for frame in tqdm(frames, desc='verifying', unit='frame', disable=not progress):
        tensor, _ = preprocessor(frame.pixels, frame.rgb_channels)
        ref_out, transform = infer_frame(reference, preprocessor, frame, tensor)
        cand_out, cand_transform = infer_frame(candidate, preprocessor, frame, tensor)
        for name, a, b in zip(names, ref_out, cand_out, strict=True):
            if a.shape != b.shape:
                raise VerifyError(f'output {name!r}: {candidate.description} gives shape {list(b.shape)}, '
                                  f'{reference.description} {list(a.shape)}')
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            max_diff[name] = max(max_diff[name], float(diff.max(initial=0.0)))
            sum_diff[name] += float(diff.mean()) if diff.size else 0.0
            differing[name] += int((diff > DIFF_TOLERANCE * (1 + np.abs(a))).sum())
            values[name] += diff.size
        for key, outputs, t in (('reference', ref_out, transform), ('candidate', cand_out, cand_transform)):
            found[key].append(decode(outputs, bundle.output.format, len(bundle.classes), t, thresholds))
    if not any(len(f.truth.boxes) for f in frames):
        raise VerifyError('the verification frames have no ground-truth boxes; mAP needs some')
    truth = [f.truth for f in frames]
    ref_map = _map(evaluate(truth, bundle.classes, dict(enumerate(found['reference']))))
    cand_map = _map(evaluate(truth, bundle.classes, dict(enumerate(found['candidate']))))
    drop = ref_map['map'] - cand_map['map']
    limit = allowed_drop(precision, allow_drop)
    return VerifyReport(
        reference=reference.description, candidate=candidate.description, precision=precision,
        frames=len(frames), max_abs_diff=max_diff,
        mean_abs_diff={k: v / len(frames) for k, v in sum_diff.items()},
        differing_fraction={k: differing[k] / max(values[k], 1) for k in names},
        reference_map=ref_map, candidate_map=cand_map, map_drop=round(drop, 6), allowed_drop=limit,
        passed=drop <= limit,
        detections={k: sum(len(d) for d in v) for k, v in found.items()})
