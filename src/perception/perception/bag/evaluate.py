"""``perception-bag evaluate``: detections against ground truth, matched by stamp.

Inputs are the ground-truth bag (frames with ``vision_msgs/Detection2DArray`` ground truth, as
``record-synthetic`` writes) and the bag of answers. Answers are matched to frames through

1. ``/replay/time_reference`` when ``perception-bag replay`` recorded the answers: it maps each
   published stamp to the frame's stamp in the ground-truth bag, and latency = receipt time
   (log time) minus published stamp;
2. otherwise stamps as they are (``ros2 bag play`` keeps header stamps); latency then comes
   from the image topic when the answers bag recorded it too (``ros2 bag record`` of both
   topics: answer log time minus frame log time), else it is not reported.

Accuracy is COCO mAP (pycocotools, through ``perception_core.coco_metrics``) over the frames that were
answered; frames published but never answered are reported as dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perception.bag.messages import DETECTIONS, IMAGE, TIME_REFERENCE, Detection, detections_of
from perception.bag.reader import Bag, BagError, stamp_ns
from perception.bag.replay import TIME_REFERENCE_TOPIC
from perception_core.coco_metrics import Sample
from perception_core.coco_metrics import evaluate as coco_evaluate
from perception_core.decode import Detections
from perception_core.metrics import summary_ms

log = logging.getLogger(__name__)


@dataclass
class FrameResult:
    """One ground-truth frame and what the detector answered for it."""

    stamp: int                                 # in the ground-truth bag
    truth: list[Detection]
    answer: list[Detection] | None = None      # None: published but not answered (dropped)
    latency_ns: int | None = None


@dataclass
class Evaluation:
    truth_bag: Path
    answers_bag: Path
    frames: list[FrameResult]                  # the frames that were published, in stamp order
    classes: list[str]
    latency_source: str                        # how latency was measured, or why it is missing
    unmatched_answers: int = 0                 # answers whose stamp matches no published frame
    damage: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def _ground_truth(bag: Bag, topic: str) -> dict[int, list[Detection]]:
    return {stamp_ns(msg): detections_of(msg) for _, msg in bag.stamped(topic, DETECTIONS)}


def _published(answers: Bag, truth: dict[int, list[Detection]],
               image_topic: str) -> tuple[dict[int, int], dict[int, int], str]:
    """(answer stamp -> ground-truth stamp, answer stamp -> publish time ns, latency source)."""
    if TIME_REFERENCE_TOPIC in answers.topics:
        mapping, sent = {}, {}
        for _, ref in answers.messages(TIME_REFERENCE_TOPIC, TIME_REFERENCE):
            stamp = stamp_ns(ref)
            mapping[stamp] = ref.time_ref.sec * 1_000_000_000 + ref.time_ref.nanosec  # type: ignore[attr-defined]
            sent[stamp] = stamp
        return mapping, sent, f'receipt time - publish stamp ({TIME_REFERENCE_TOPIC})'
    if image_topic in answers.topics:
        sent = {stamp_ns(msg): log_time for log_time, msg in answers.messages(image_topic, IMAGE)}
        return ({s: s for s in sent}, sent,
                f'answer log time - frame log time ({image_topic} in the answers bag)')
    return ({s: s for s in truth}, {},
            f'not measured: the answers bag has neither {TIME_REFERENCE_TOPIC} nor {image_topic}')


def match(truth_bag: str | Path, answers_bag: str | Path, *, truth_topic: str = '/ground_truth',
          detections_topic: str = '/object_detections',
          image_topic: str = '/camera/image_rect') -> Evaluation:
    """Pair every published frame with its answer (or none) and its latency."""
    truth_source, answer_source = Bag(truth_bag), Bag(answers_bag)
    truth = _ground_truth(truth_source, truth_topic)
    mapping, sent, latency_source = _published(answer_source, truth, image_topic)
    frames = {s: FrameResult(s, truth[s]) for s in sorted(set(mapping.values())) if s in truth}
    unknown = sorted(set(mapping.values()) - set(truth))
    if unknown and truth_source.damage is None:
        raise BagError(f'{answer_source.path}: {len(unknown)} published frame(s) have no ground truth on '
                       f'{truth_topic!r} in {truth_source.path} (first stamp {unknown[0]}); wrong bag?')
    if unknown:  # their ground truth lies beyond the damage: they cannot be scored
        log.warning('%s: %d published frame(s) lie beyond the damage in %s and are not evaluated',
                    answer_source.path, len(unknown), truth_source.path)
    unmatched = 0
    for log_time, msg in answer_source.messages(detections_topic, DETECTIONS):
        stamp = stamp_ns(msg)
        frame = frames.get(mapping.get(stamp, -1))
        if frame is None:
            unmatched += 1
        elif frame.answer is None:  # a second answer to one frame is ignored
            frame.answer = detections_of(msg)
            frame.latency_ns = log_time - sent[stamp] if stamp in sent else None
    if unmatched:
        log.warning('%s: %d answer(s) on %s match no published frame', answer_source.path, unmatched,
                    detections_topic)
    names = {d.class_id for f in frames.values() for d in f.truth}
    extra = {d.class_id for f in frames.values() for d in f.answer or []} - names
    return Evaluation(truth_source.path, answer_source.path, list(frames.values()),
                      sorted(names) + sorted(extra), latency_source, unmatched,
                      [d for d in (truth_source.damage, answer_source.damage) if d])


def as_detections(boxes: list[Detection], classes: list[str]) -> Detections:
    """Boxes in the node's array form, class names as indices into ``classes``."""
    if not boxes:
        return Detections.empty()
    return Detections(np.array([[d.x1, d.y1, d.x2, d.y2] for d in boxes], np.float32),
                      np.array([d.score for d in boxes], np.float32),
                      np.array([classes.index(d.class_id) for d in boxes], np.int64))


def coco_metrics(frames: list[FrameResult], classes: list[str]) -> dict:
    """mAP@.5, mAP@.5:.95 and per-class AP@.5 over the answered frames (pycocotools, through coco_metrics)."""
    answered = [f for f in frames if f.answer is not None]
    # Image sizes are not in the ground-truth messages; COCO's bbox evaluation does not use them.
    samples = [Sample(image=Path(f'{f.stamp}'), width=0, height=0, boxes=truth.boxes, labels=truth.class_ids)
               for f in answered for truth in [as_detections(f.truth, classes)]]
    metrics = coco_evaluate(samples, classes, {i: as_detections(f.answer or [], classes)
                                               for i, f in enumerate(answered)})
    return {'map50': metrics.map50, 'map50_95': metrics.map,
            'ap50_per_class': {k: None if np.isnan(v) else v for k, v in metrics.per_class_ap50.items()}}


def latency_metrics(frames: list[FrameResult]) -> dict:
    return summary_ms(f.latency_ns / 1e9 for f in frames if f.latency_ns is not None)


def evaluate(truth_bag: str | Path, answers_bag: str | Path, **topics: str) -> Evaluation:
    """:func:`match`, then accuracy, latency and frame counts in ``Evaluation.metrics``."""
    evaluation = match(truth_bag, answers_bag, **topics)
    frames = evaluation.frames
    answered = [f for f in frames if f.answer is not None]
    evaluation.metrics = {
        'frames': len(frames),
        'answered': len(answered),
        'dropped': len(frames) - len(answered),
        'detections': sum(len(f.answer or []) for f in frames),
        'ground_truth_boxes': sum(len(f.truth) for f in answered),
        'unmatched_answers': evaluation.unmatched_answers,
        **coco_metrics(frames, evaluation.classes),
        'latency': {'source': evaluation.latency_source, **latency_metrics(frames)},
    }
    return evaluation
