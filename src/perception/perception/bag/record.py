"""``perception-bag record-synthetic``: a camera bag from the synthetic scene generator.

Frames go on the image topic as rgb8 ``sensor_msgs/Image`` with stamps at a fixed rate, and the
scene's exact boxes go on the ground-truth topic as ``vision_msgs/Detection2DArray`` carrying the
same stamp and frame_id (score 1.0, class_id = class name). Log times equal the stamps, as if a
recorder had received each message the moment it was taken. The same arguments always give the
same bag.

With ``compressed`` ('jpeg' or 'png') the frames are ``sensor_msgs/CompressedImage`` on
``<image topic>/compressed`` instead, as a robot's recording of image_transport's compressed
transport holds them (format "rgb8; jpeg compressed bgr8"); the ground truth is unchanged.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from perception.bag.messages import (
    COMPRESSED_IMAGE,
    COMPRESSION_CODECS,
    DETECTIONS,
    IMAGE,
    Detection,
    compressed_image_message,
    detections_message,
    image_message,
    open_writer,
    typestore,
)
from perception_core.compressed import SUFFIX
from perception_core.synth import DEFAULT_CLASSES, render_scene

log = logging.getLogger(__name__)

# 2023-11-14T22:13:20Z: a fixed start keeps bags reproducible byte for byte.
DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000
# The trainer's data sets use small seeds; this one is held out for replay tests.
DEFAULT_SEED = 90210


@dataclass(frozen=True)
class SyntheticBag:
    path: Path
    frames: int
    boxes: int
    width: int
    height: int
    fps: float
    image_topic: str = '/camera/image_rect'  # where the frames are (the /compressed one if compressed)


def record_synthetic(out: str | Path, *, frames: int = 300, fps: float = 30.0, width: int = 640,
                     height: int = 480, seed: int = DEFAULT_SEED, classes: Sequence[str] = DEFAULT_CLASSES,
                     storage: str = 'mcap', image_topic: str = '/camera/image_rect',
                     truth_topic: str = '/ground_truth', frame_id: str = 'camera_optical_frame',
                     start_ns: int = DEFAULT_START_NS, progress: bool = True,
                     compressed: str | None = None) -> SyntheticBag:
    """Write the bag to ``out`` (a new folder); it appears only when complete. ``compressed``: None
    for raw Images, else the codec ('jpeg', 'png') of CompressedImages on ``image_topic``/compressed."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f'{out}: exists already; bags are never overwritten')
    if frames < 1 or fps <= 0:
        raise ValueError(f'need frames >= 1 and fps > 0, got frames={frames}, fps={fps}')
    if compressed is not None and compressed not in COMPRESSION_CODECS:
        raise ValueError(f'compressed must be one of {list(COMPRESSION_CODECS)}, got {compressed!r}')
    if compressed is not None:
        image_topic = image_topic.rstrip('/') + SUFFIX
    # Written inside a hidden folder and moved into place when complete; the inner folder already
    # has the final name, because the writer names the storage file after it.
    staging = out.parent / f'.{out.name}.partial'
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    store = typestore()
    writer = open_writer(staging / out.name, storage)
    frame_type = IMAGE if compressed is None else COMPRESSED_IMAGE
    images = writer.add_connection(image_topic, frame_type, typestore=store)
    truth = writer.add_connection(truth_topic, DETECTIONS, typestore=store)
    period = 1e9 / fps
    total_boxes = 0
    try:
        for index in tqdm(range(frames), desc=f'rendering {out.name}', unit='frame', disable=not progress):
            scene = render_scene(seed, index, width, height, classes)
            stamp = start_ns + round(index * period)
            frame = (image_message(scene.image, stamp, frame_id) if compressed is None
                     else compressed_image_message(scene.image, stamp, frame_id, compressed))
            writer.write(images, stamp, bytes(store.serialize_cdr(frame, frame_type)))
            boxes = [Detection(b.class_name, 1.0, b.x1, b.y1, b.x2, b.y2) for b in scene.boxes]
            writer.write(truth, stamp, bytes(store.serialize_cdr(detections_message(boxes, stamp, frame_id),
                                                                 DETECTIONS)))
            total_boxes += len(boxes)
        writer.close()
        (staging / out.name).rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info('%s: %d frames %dx%d at %g Hz on %s, %d ground-truth boxes', out, frames, width, height, fps,
             image_topic, total_boxes)
    return SyntheticBag(out, frames, total_boxes, width, height, fps, image_topic)
