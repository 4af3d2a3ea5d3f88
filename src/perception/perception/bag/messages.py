"""Messages for bags, without a ROS install: the rosbags typestore plus vision_msgs, and builders.

rosbags ships the standard ROS 2 types but not vision_msgs, so those are registered from the same
.msg files ROS builds them from (the installed ``share/vision_msgs/msg`` or the workspace's
``interfaces/vision_msgs/msg``). Type names and field layouts then match what ``ros2 bag`` records
and plays, so bags written here and there are interchangeable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
FRAME_TYPES = (IMAGE, COMPRESSED_IMAGE)  # what a replayed camera topic may carry
DETECTIONS = 'vision_msgs/msg/Detection2DArray'
TIME_REFERENCE = 'sensor_msgs/msg/TimeReference'
COMPRESSION_CODECS = {'jpeg': '.jpg', 'png': '.png'}  # codec -> OpenCV's file extension
# Humble's type definitions: the oldest distro the workspace supports; these types are unchanged since.
STORE = Stores.ROS2_HUMBLE


def vision_msgs_directory() -> Path:
    """Folder of vision_msgs' .msg files: installed package first, else this workspace's sources."""
    try:
        from ament_index_python.packages import get_package_share_directory
        installed = Path(get_package_share_directory('vision_msgs')) / 'msg'
        if installed.is_dir():
            return installed
    except (ImportError, LookupError, OSError):
        pass
    for parent in Path(__file__).resolve().parents:
        candidate = parent / 'interfaces' / 'vision_msgs' / 'msg'
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError('vision_msgs .msg files not found: neither an installed vision_msgs package '
                            '(source env.sh) nor interfaces/vision_msgs/msg above ' + str(Path(__file__)))


@cache
def typestore() -> Typestore:
    store = get_typestore(STORE)
    types = {}
    for msg in sorted(vision_msgs_directory().glob('*.msg')):
        types.update(get_types_from_msg(msg.read_text(encoding='utf-8'), f'vision_msgs/msg/{msg.stem}'))
    store.register(types)
    return store


@dataclass(frozen=True)
class Detection:
    """One box in image pixels, as ground truth (score 1) or as the node reported it."""

    class_id: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float


def header(stamp: int, frame_id: str) -> object:
    types = typestore().types
    time = types['builtin_interfaces/msg/Time'](sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000)
    return types['std_msgs/msg/Header'](stamp=time, frame_id=frame_id)


def image_message(rgb: np.ndarray, stamp: int, frame_id: str) -> object:
    """An rgb8 sensor_msgs/Image of an HxWx3 uint8 array."""
    height, width, _ = rgb.shape
    return typestore().types[IMAGE](header=header(stamp, frame_id), height=height, width=width,
                                    encoding='rgb8', is_bigendian=0, step=width * 3,
                                    data=np.ascontiguousarray(rgb, dtype=np.uint8).reshape(-1))


def compressed_image_message(rgb: np.ndarray, stamp: int, frame_id: str, codec: str = 'jpeg') -> object:
    """A sensor_msgs/CompressedImage of an HxWx3 uint8 RGB array as compressed_image_transport
    publishes an rgb8 camera: converted to BGR, encoded by OpenCV, format "rgb8; jpeg compressed bgr8"
    (or png)."""
    import cv2
    if codec not in COMPRESSION_CODECS:
        raise ValueError(f'compression codec {codec!r} is not one of {list(COMPRESSION_CODECS)}')
    ok, data = cv2.imencode(COMPRESSION_CODECS[codec], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f'OpenCV could not encode a {rgb.shape} image as {codec}')
    return typestore().types[COMPRESSED_IMAGE](header=header(stamp, frame_id),
                                               format=f'rgb8; {codec} compressed bgr8', data=data.reshape(-1))


def detections_message(detections: Iterable[Detection], stamp: int, frame_id: str) -> object:
    t = typestore().types
    head = header(stamp, frame_id)
    pose = t['geometry_msgs/msg/PoseWithCovariance'](
        pose=t['geometry_msgs/msg/Pose'](position=t['geometry_msgs/msg/Point'](x=0.0, y=0.0, z=0.0),
                                         orientation=t['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0, z=0.0,
                                                                                       w=1.0)),
        covariance=np.zeros(36, dtype=np.float64))
    items = []
    for index, d in enumerate(detections):
        center = t['vision_msgs/msg/Pose2D'](
            position=t['vision_msgs/msg/Point2D'](x=(d.x1 + d.x2) / 2, y=(d.y1 + d.y2) / 2), theta=0.0)
        hypothesis = t['vision_msgs/msg/ObjectHypothesis'](class_id=d.class_id, score=float(d.score))
        result = t['vision_msgs/msg/ObjectHypothesisWithPose'](hypothesis=hypothesis, pose=pose)
        items.append(t['vision_msgs/msg/Detection2D'](
            header=head, results=[result],
            bbox=t['vision_msgs/msg/BoundingBox2D'](center=center, size_x=d.x2 - d.x1, size_y=d.y2 - d.y1),
            id=str(index)))
    return t[DETECTIONS](header=head, detections=items)


def detections_of(msg: object) -> list[Detection]:
    """The boxes of a Detection2DArray; each detection's best hypothesis gives class and score."""
    out = []
    for det in msg.detections:  # type: ignore[attr-defined]
        if not det.results:
            continue
        best = max(det.results, key=lambda r: r.hypothesis.score).hypothesis
        cx, cy = det.bbox.center.position.x, det.bbox.center.position.y
        w, h = det.bbox.size_x, det.bbox.size_y
        out.append(Detection(best.class_id, best.score, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return out


def time_reference_message(stamp: int, frame_id: str, reference: int, source: str) -> object:
    t = typestore().types
    ref = t['builtin_interfaces/msg/Time'](sec=reference // 1_000_000_000, nanosec=reference % 1_000_000_000)
    return t[TIME_REFERENCE](header=header(stamp, frame_id), time_ref=ref, source=source)


def open_writer(path: Path, storage: str) -> Writer:
    """A rosbag2 writer (metadata version 8: the oldest rosbags writes, closest to Humble's)."""
    plugins = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
    writer = Writer(path, version=8, storage_plugin=plugins[storage])
    writer.open()
    return writer
