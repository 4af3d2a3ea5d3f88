"""Frames with predicted and ground-truth boxes: an MP4 of the replay and a PNG strip.

Predictions are drawn by the node's own debug-image code (class colours, "name score" labels);
ground truth is a thin white box underneath, so misses and false alarms stand out. Frames the
detector never answered are marked DROPPED.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from perception.bag.evaluate import Evaluation, FrameResult, as_detections
from perception.bag.messages import COMPRESSED_IMAGE, IMAGE
from perception.bag.reader import Bag, stamp_ns
from perception_core.atomic import atomic_path
from perception_core.compressed import frame_from_compressed
from perception_core.convert import Frame, frame_from_image
from perception_core.debug_image import draw_detections

log = logging.getLogger(__name__)

WHITE = (255, 255, 255)
RED = (255, 40, 40)


def annotate(image: object, frame: FrameResult, classes: list[str]) -> np.ndarray:
    """An RGB image of the bag's frame with ground truth (white) and predictions (class colours)."""
    if getattr(image, '__msgtype__', IMAGE) == COMPRESSED_IMAGE:  # a robot's bag: JPEG/PNG frames
        source = frame_from_compressed(None, format=image.format, data=image.data)  # type: ignore[attr-defined]
    else:
        source = frame_from_image(image)
    canvas = np.ascontiguousarray(source.pixels[:, :, list(source.rgb_channels)])
    for d in frame.truth:
        cv2.rectangle(canvas, (int(d.x1), int(d.y1)), (int(d.x2), int(d.y2)), WHITE, 1)
    detected, _ = draw_detections(Frame(canvas, 'rgb8'), as_detections(frame.answer or [], classes), classes)
    if frame.answer is None:
        cv2.putText(detected, 'DROPPED', (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, RED, 2, cv2.LINE_AA)
    return detected


def annotated_frames(evaluation: Evaluation, image_topic: str) -> Iterator[np.ndarray]:
    """Annotated RGB images of the evaluated frames, in order, read from the ground-truth bag."""
    frames = {f.stamp: f for f in evaluation.frames}
    bag = Bag(evaluation.truth_bag)
    for _, image in bag.stamped(image_topic, bag.topics.get(image_topic, IMAGE)):
        frame = frames.get(stamp_ns(image))
        if frame is not None:
            yield annotate(image, frame, evaluation.classes)


def write_video(evaluation: Evaluation, path: Path, image_topic: str, fps: float,
                progress: bool = True) -> Path | None:
    """An MP4 of every evaluated frame; None when this OpenCV build cannot encode MP4."""
    writer = None
    with atomic_path(path) as tmp:
        for rgb in tqdm(annotated_frames(evaluation, image_topic), total=len(evaluation.frames),
                        desc='annotating', unit='frame', disable=not progress):
            if writer is None:
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*'mp4v'), fps,
                                         (rgb.shape[1], rgb.shape[0]))
                if not writer.isOpened():
                    log.warning('%s: this OpenCV cannot write MP4 (mp4v); no video', path)
                    return None
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if writer is None:
            return None
        writer.release()
    return path


def write_strip(evaluation: Evaluation, path: Path, image_topic: str, count: int = 6,
                columns: int = 3) -> Path | None:
    """A PNG grid of ``count`` evenly spaced frames at half size; None when there are no frames."""
    if not evaluation.frames:
        return None
    picks = {evaluation.frames[int(i)].stamp
             for i in np.linspace(0, len(evaluation.frames) - 1, min(count, len(evaluation.frames)))}
    evaluation_subset = Evaluation(evaluation.truth_bag, evaluation.answers_bag,
                                   [f for f in evaluation.frames if f.stamp in picks], evaluation.classes,
                                   evaluation.latency_source)
    tiles = [cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)
             for rgb in annotated_frames(evaluation_subset, image_topic)]
    if not tiles:
        return None
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (-len(tiles) % columns)
    grid = np.vstack([np.hstack(tiles[r:r + columns]) for r in range(0, len(tiles), columns)])
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
            raise OSError(f'{path}: OpenCV could not write the PNG')
    return path
