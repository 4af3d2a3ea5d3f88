"""Does a converted model still detect what the original did? Scored against ground truth by COCO mAP.

The verification of ``perception-build-engine`` and ``perception-verify-engine``: both backends run
on the same frames (``perception_core.engine.verification.compare``: one preprocessing, the same
tensor to both), the report gives the output differences and the detection-level effect: COCO mAP
of each against the ground truth, decoded by the node's decoder, and the drop. It fails when the
drop exceeds the precision's limit. Frames come from a labelled data set (read by the trainer's
readers) or the synthetic scenes, whose ground truth is known. The trainer is not on the robot
image, so this stays here; the node's build-on-start verifies by agreement instead, which needs
neither the trainer nor pycocotools.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cv2
from tqdm import tqdm

from perception_core.backends import Backend
from perception_core.bundle import Bundle
from perception_core.coco_metrics import Metrics, Sample, evaluate
from perception_core.decode import Thresholds
from perception_core.engine.frames import BGR, EVAL_FRAMES, EVAL_SEED, SCENE_SIZE, ImageFrame, labelled_scenes
from perception_core.engine.verification import VerifyError, compare

log = logging.getLogger(__name__)
# Largest mAP@[.5:.95] drop a build may show; TensorRT's fp32 uses TF32 kernels, hence not zero.
MAX_MAP_DROP = {'fp32': 0.01, 'fp16': 0.01, 'int8': 0.03}


@dataclass(frozen=True)
class EvalFrame(ImageFrame):
    """An image and its ground truth."""
    truth: Sample


@dataclass
class VerifyReport:
    reference: str
    candidate: str
    precision: str
    frames: int
    max_abs_diff: dict[str, float]
    mean_abs_diff: dict[str, float]
    differing_fraction: dict[str, float]   # see perception_core.engine.verification.OutputDifferences
    reference_map: dict[str, float]        # {"map": mAP@[.5:.95], "map50": mAP@.5}, by pycocotools
    candidate_map: dict[str, float]
    map_drop: float
    allowed_drop: float
    passed: bool
    detections: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        worst = max(self.max_abs_diff.values(), default=0.0)
        return (f'{"PASSED" if self.passed else "FAILED"}: {self.candidate} vs {self.reference} on '
                f'{self.frames} frames: max abs diff {worst:.3g}, mAP {self.candidate_map["map"]:.4f} vs '
                f'{self.reference_map["map"]:.4f} (drop {self.map_drop:+.4f}, allowed {self.allowed_drop})')

    def remedy(self) -> str:
        return '--allow-accuracy-drop raises the limit'


def dataset_frames(path: Path, bundle: Bundle, limit: int) -> list[EvalFrame]:
    """Frames of a labelled data set (COCO, KITTI or metadata.json, as the trainer reads them)."""
    from perception_trainer.readers import load_dataset
    labelled = load_dataset(path, classes=bundle.classes)
    frames = []
    for sample in labelled.samples[:limit]:
        pixels = cv2.imread(str(sample.image), cv2.IMREAD_COLOR)
        if pixels is None:
            log.warning('%s: unreadable image, not used for verification', sample.image)
            continue
        frames.append(EvalFrame(pixels=pixels, rgb_channels=BGR, truth=sample))
    if not frames:
        raise VerifyError(f'{path}: no readable labelled images for verification')
    return frames


def synthetic_frames(bundle: Bundle, count: int = EVAL_FRAMES, seed: int = EVAL_SEED,
                     size: tuple[int, int] = SCENE_SIZE) -> list[EvalFrame]:
    """Camera-sized scenes of the bundle's classes, with the boxes the generator drew as truth."""
    return [EvalFrame(pixels=scene.frame.pixels, rgb_channels=scene.frame.rgb_channels,
                      truth=Sample(Path(f'synthetic/{seed}/{i:06d}'), *size, scene.boxes, scene.labels))
            for i, scene in enumerate(labelled_scenes(bundle, count, seed, size))]


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
    shown = tqdm(frames, desc='verifying', unit='frame', disable=not progress)
    run = compare(reference, candidate, bundle, shown, thresholds)
    if not any(len(f.truth.boxes) for f in frames):
        raise VerifyError('the verification frames have no ground-truth boxes; mAP needs some')
    truth = [f.truth for f in frames]
    ref_map = _map(evaluate(truth, bundle.classes, dict(enumerate(run.reference))))
    cand_map = _map(evaluate(truth, bundle.classes, dict(enumerate(run.candidate))))
    drop = ref_map['map'] - cand_map['map']
    limit = allowed_drop(precision, allow_drop)
    return VerifyReport(
        reference=reference.description, candidate=candidate.description, precision=precision,
        frames=len(frames), max_abs_diff=run.differences.max_abs, mean_abs_diff=run.differences.mean_abs(),
        differing_fraction=run.differences.differing_fraction(),
        reference_map=ref_map, candidate_map=cand_map, map_drop=round(drop, 6), allowed_drop=limit,
        passed=drop <= limit,
        detections={'reference': sum(map(len, run.reference)), 'candidate': sum(map(len, run.candidate))})


@dataclass(frozen=True)
class GroundTruthVerifier:
    """:func:`verify` as the build's verifier: frames from ``eval_data`` (a labelled set) or, without
    it, ``eval_frames`` synthetic scenes."""

    eval_data: Path | None = None
    eval_frames: int = EVAL_FRAMES
    allow_drop: float | None = None
    progress: bool = True

    name: ClassVar[str] = 'ground_truth_map'

    def verify(self, reference: Backend, candidate: Backend, bundle: Bundle, precision: str) -> VerifyReport:
        frames = (dataset_frames(self.eval_data, bundle, self.eval_frames) if self.eval_data
                  else synthetic_frames(bundle, self.eval_frames))
        return verify(reference, candidate, bundle, frames, precision, allow_drop=self.allow_drop,
                      progress=self.progress)
