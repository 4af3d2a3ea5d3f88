"""Is a new engine fit to replace the model it was built from? A verifier judges it against ONNX Runtime.

:func:`~perception_core.engine.build.build_engine` runs a :class:`Verifier` on the staged engine and
installs it only when the verification passed. The default, :class:`AgreementVerifier`, needs
nothing beyond what the robot image installs: both backends run on synthetic scenes and must find
the same objects (``agreement``). The builder's commands pass a verifier of their own that scores
both against ground truth by COCO mAP. Either way the report carries the raw output differences.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from perception_core.backends import Backend
from perception_core.bundle import Bundle
from perception_core.decode import Detections, Thresholds, decode
from perception_core.preprocess import Preprocessor

from .agreement import MIN_IOU, agreement, unmatched
from .frames import EVAL_FRAMES, EVAL_SEED, ImageFrame, infer_frame, scene_frames

DIFF_TOLERANCE = 1e-3      # absolute, plus the same relative to the reference value
# How far above the score threshold a detection must score before its absence from the other run
# counts: a rounding difference moves a borderline score across the threshold, and INT8 moves
# scores further than FP16 or TF32 do.
SCORE_MARGIN = {'fp32': 0.02, 'fp16': 0.02, 'int8': 0.05}
SHOWN_DISAGREEMENTS = 3    # frames named in the one-line summary; the report lists them all


class VerifyError(RuntimeError):
    """A verification that cannot run (no frames, a backend that fails); names the cause."""


class Verification(Protocol):
    """What a verifier reports: the verdict, one line for logs and errors, the JSON for files."""

    @property
    def passed(self) -> bool: ...

    def summary(self) -> str: ...

    def remedy(self) -> str:
        """What to do when it failed, for the error message."""
        ...

    def to_json(self) -> dict[str, Any]: ...


class Verifier(Protocol):
    name: ClassVar[str]   # recorded with the report, so the files say which verification ran

    def verify(self, reference: Backend, candidate: Backend, bundle: Bundle, precision: str) -> Verification:
        ...


class OutputDifferences:
    """Per network output: the largest and mean absolute difference, and the share of values off by
    more than DIFF_TOLERANCE. In-graph peak suppression (a max-pool equality) turns a rounding
    difference into a score appearing or vanishing, so one flip makes the max large while the share,
    and the detections, show whether it matters."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.frames = 0
        self.max_abs = dict.fromkeys(self.names, 0.0)
        self._sum_of_means = dict.fromkeys(self.names, 0.0)
        self._differing = dict.fromkeys(self.names, 0)
        self._values = dict.fromkeys(self.names, 0)

    def add(self, reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], reference_name: str,
            candidate_name: str) -> None:
        for name, a, b in zip(self.names, reference, candidate, strict=True):
            if a.shape != b.shape:
                raise VerifyError(f'output {name!r}: {candidate_name} gives shape {list(b.shape)}, '
                                  f'{reference_name} {list(a.shape)}')
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            self.max_abs[name] = max(self.max_abs[name], float(diff.max(initial=0.0)))
            self._sum_of_means[name] += float(diff.mean()) if diff.size else 0.0
            self._differing[name] += int((diff > DIFF_TOLERANCE * (1 + np.abs(a))).sum())
            self._values[name] += diff.size
        self.frames += 1

    def mean_abs(self) -> dict[str, float]:
        return {k: v / max(self.frames, 1) for k, v in self._sum_of_means.items()}

    def differing_fraction(self) -> dict[str, float]:
        return {k: self._differing[k] / max(self._values[k], 1) for k in self.names}


@dataclass
class Comparison:
    """Both backends over the same frames: the output differences and each one's detections."""
    differences: OutputDifferences
    reference: list[Detections] = field(default_factory=list)
    candidate: list[Detections] = field(default_factory=list)


def compare(reference: Backend, candidate: Backend, bundle: Bundle, frames: Iterable[ImageFrame],
            thresholds: Thresholds) -> Comparison:
    """Run both backends on every frame (one preprocessing, the same tensor to both) and decode
    each one's outputs with the node's decoder."""
    preprocessor = Preprocessor(bundle.input)
    run = Comparison(OutputDifferences(bundle.output.names))
    for frame in frames:
        tensor, _ = preprocessor(frame.pixels, frame.rgb_channels)
        ref_out, ref_transform = infer_frame(reference, preprocessor, frame, tensor)
        cand_out, cand_transform = infer_frame(candidate, preprocessor, frame, tensor)
        run.differences.add(ref_out, cand_out, reference.description, candidate.description)
        for found, outputs, transform in ((run.reference, ref_out, ref_transform),
                                          (run.candidate, cand_out, cand_transform)):
            found.append(decode(outputs, bundle.output, len(bundle.classes), transform, thresholds))
    return run


@dataclass
class AgreementReport:
    reference: str
    candidate: str
    precision: str
    frames: int
    detections: dict[str, int]       # {"reference": n, "candidate": m}, over all frames
    count_mismatches: int            # frames where the two counts differ (borderline scores included)
    min_iou: float | None            # of each reference detection with its match (0: none); None: none found
    mean_iou: float | None
    required_iou: float
    score_floor: float               # detections scoring below this may be missing from the other run
    disagreements: list[str]         # one line per frame that fails, naming it and its counts
    max_abs_diff: dict[str, float]
    mean_abs_diff: dict[str, float]
    differing_fraction: dict[str, float]
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        worst = max(self.max_abs_diff.values(), default=0.0)
        iou = 'no detections' if self.min_iou is None else f'min IoU {self.min_iou:.3f}'
        text = (f'{"PASSED" if self.passed else "FAILED"}: {self.candidate} vs {self.reference} on '
                f'{self.frames} synthetic frames: {self.detections["candidate"]} detections vs '
                f'{self.detections["reference"]}, {iou} (required {self.required_iou}), '
                f'max abs diff {worst:.3g}')
        if self.disagreements:
            shown = '; '.join(self.disagreements[:SHOWN_DISAGREEMENTS])
            more = len(self.disagreements) - SHOWN_DISAGREEMENTS
            text += (f'; {len(self.disagreements)} frame(s) disagree: {shown}'
                     + (f'; and {more} more' if more > 0 else ''))
        return text

    def remedy(self) -> str:
        return ('perception-build-engine verifies by COCO mAP on labelled images instead, with a limit '
                '--allow-accuracy-drop can raise')


@dataclass(frozen=True)
class AgreementVerifier:
    """Both backends on synthetic scenes must find the same objects: in every frame each detection
    clear of the score threshold (by SCORE_MARGIN, or ``score_margin``) has its same-class match in
    the other run, overlapping with IoU >= ``min_iou``."""

    frames: int = EVAL_FRAMES
    seed: int = EVAL_SEED
    min_iou: float = MIN_IOU
    score_margin: float | None = None

    name: ClassVar[str] = 'agreement'

    def verify(self, reference: Backend, candidate: Backend, bundle: Bundle,
               precision: str) -> AgreementReport:
        if self.frames < 1:
            raise VerifyError(f'{self.frames} frames: at least one is needed to verify on')
        thresholds = Thresholds.resolve(bundle.postprocess)
        frames = scene_frames(bundle, self.frames, self.seed)
        run = compare(reference, candidate, bundle, frames, thresholds)
        margin = SCORE_MARGIN[precision] if self.score_margin is None else self.score_margin
        floor = round(thresholds.score + margin, 6)
        overall = agreement(run.reference, run.candidate, self.min_iou)
        disagreements = []
        for i, (a, b) in enumerate(zip(run.reference, run.candidate, strict=True)):
            missing = unmatched(a, b, floor, self.min_iou)
            if missing:
                disagreements.append(f'frame {i}: {len(b)} detections vs {len(a)}, {missing} scoring >= '
                                     f'{floor:g} without a match at IoU >= {self.min_iou}')
        return AgreementReport(
            reference=reference.description, candidate=candidate.description, precision=precision,
            frames=self.frames,
            detections={'reference': sum(map(len, run.reference)), 'candidate': sum(map(len, run.candidate))},
            count_mismatches=overall['count_mismatches'], min_iou=overall['min_iou'],
            mean_iou=overall['mean_iou'], required_iou=self.min_iou, score_floor=floor,
            disagreements=disagreements, max_abs_diff=run.differences.max_abs,
            mean_abs_diff=run.differences.mean_abs(),
            differing_fraction=run.differences.differing_fraction(), passed=not disagreements)
