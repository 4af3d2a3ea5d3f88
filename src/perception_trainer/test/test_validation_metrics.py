"""The trainer's validation scores with faster-coco-eval (``coco_metrics.evaluate(fast=True)``):
the same numbers as pycocotools, the reference every report uses, on real frames' ground truth
with detections as a detector gives them (each object found with its box jittered, a missed one,
duplicates, false positives, a class never present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception_core import coco_metrics
from perception_core.decode import Detections
from perception_trainer.readers import load_dataset


def detector_like(samples: list, classes: int, seed: int) -> dict[int, Detections]:
    rng = np.random.default_rng(seed)
    found = {}
    for i, sample in enumerate(samples):
        boxes = np.asarray(sample.boxes, np.float32).reshape(-1, 4)[1:]  # the first object missed
        labels = np.asarray(sample.labels)[1:]
        jittered = boxes + rng.normal(0, 3, boxes.shape)
        twice = jittered[:2] + rng.normal(0, 8, jittered[:2].shape)  # lower-scored duplicates
        corner = rng.uniform(0, 560, (15, 2))
        false = np.concatenate([corner, corner + rng.uniform(8, 80, (15, 2))], 1)
        found[i] = Detections(
            boxes=np.concatenate([jittered, twice, false]).astype(np.float32),
            scores=np.concatenate([rng.uniform(0.4, 1, len(jittered)), rng.uniform(0.1, 0.5, len(twice)),
                                   rng.uniform(0.05, 0.6, 15)]).astype(np.float32),
            class_ids=np.concatenate([labels, labels[:2], rng.integers(0, classes, 15)]).astype(np.int64))
    return found


@pytest.mark.parametrize('seed', [0, 1])
def test_fast_validation_metrics_are_pycocotools_numbers(small_set: Path, seed: int) -> None:
    labelled = load_dataset(small_set)
    classes = [*labelled.classes, 'never_present']
    detections = detector_like(labelled.samples, len(classes), seed)
    reference = coco_metrics.evaluate(labelled.samples, classes, detections)
    fast = coco_metrics.evaluate(labelled.samples, classes, detections, fast=True)
    assert 0.2 < reference.map < 0.95  # neither trivial nor perfect: the comparison can fail
    assert (fast.map, fast.map50, fast.map75) == pytest.approx((reference.map, reference.map50,
                                                                reference.map75), abs=1e-12)
    assert fast.per_class_ap.keys() == reference.per_class_ap.keys()
    for name in reference.per_class_ap:
        np.testing.assert_allclose(fast.per_class_ap[name], reference.per_class_ap[name], atol=1e-12)
        np.testing.assert_allclose(fast.per_class_ap50[name], reference.per_class_ap50[name], atol=1e-12)
    assert np.isnan(fast.per_class_ap['never_present'])
    np.testing.assert_allclose(fast.precision50, reference.precision50, atol=1e-12)
    np.testing.assert_array_equal(fast.recall, reference.recall)


def test_fast_validation_of_no_detections_is_zero_as_pycocotools(small_set: Path) -> None:
    labelled = load_dataset(small_set)
    fast = coco_metrics.evaluate(labelled.samples, labelled.classes, {}, fast=True)
    reference = coco_metrics.evaluate(labelled.samples, labelled.classes, {})
    assert (fast.map, fast.map50) == (reference.map, reference.map50) == (0.0, 0.0)
