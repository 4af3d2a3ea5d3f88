"""``perception-bag replay``: play a bag's camera frames into the live graph, record the answers.

Each frame is published with its header stamp replaced by the current wall-clock time, so the
detector's answer (which carries the image's header) tells its end-to-end latency: receipt time
minus stamp. The output bag holds

- the detections topic, as received (log time = receipt time, wall clock);
- ``/replay/time_reference`` (``sensor_msgs/TimeReference``), one per published frame:
  ``header.stamp`` = the stamp it was published with, ``time_ref`` = its stamp in the input bag,
  ``source`` = the input bag. The evaluator maps answers back to ground truth through it.

Frames are ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` (image_transport's
compressed transport), published as the bag holds them: a compressed topic is for a node with
``ros_integration.image_transport: compressed``, which decodes it. ``remaps`` (``--topic SRC:=DST``)
take the frames of the bag's topic SRC onto DST, so a robot's own recording
(``/front_camera/image_raw/compressed``) drives the node's input topic.

Pacing: the recorded rate (stamp differences) scaled by ``rate``, or ``lockstep``: the next frame
goes out as soon as the previous one is answered (or ``answer_timeout`` passes), i.e. as fast as
the detector keeps up. Before the first frame the replay repeats a warm-up frame until the
detector answers, so model loading does not count as dropped frames; answers to warm-up frames
are not recorded.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from perception.bag.messages import (
    COMPRESSED_IMAGE,
    DETECTIONS,
    FRAME_TYPES,
    IMAGE,
    TIME_REFERENCE,
    header,
    open_writer,
    time_reference_message,
    typestore,
)
from perception.bag.reader import Bag, BagError, stamp_ns
from perception_core.compressed import SUFFIX
from perception_core.qos import QosSpec

log = logging.getLogger(__name__)

TIME_REFERENCE_TOPIC = '/replay/time_reference'
WARMUP_PERIOD = 0.5  # seconds between warm-up frames while the detector starts
SENSOR_QOS = QosSpec()  # the deployment's default qos_profile: best effort, volatile, keep last 1


class ReplayError(RuntimeError):
    """The live side of a replay failed (no detector answering); the message names the topics."""


def deployment_topics(values: dict) -> dict[str, str]:
    """The node's input and output topics as replay/evaluate keyword arguments."""
    return {'image_topic': str(values['ros_integration.input_topic']),
            'detections_topic': str(values['ros_integration.output_topic'])}


def subscribed_topic(values: dict) -> str:
    """The topic the node subscribes: the input topic, or its /compressed subtopic when
    ros_integration.image_transport is compressed."""
    topic = str(values['ros_integration.input_topic'])
    if values.get('ros_integration.image_transport', 'raw') == 'compressed':
        return topic.rstrip('/') + SUFFIX
    return topic


def parse_remap(text: str) -> tuple[str, str]:
    """``SRC:=DST`` (ros2 bag play's remap syntax) -> (SRC, DST); ValueError naming the text."""
    source, sep, target = text.partition(':=')
    if not sep or not source.strip() or not target.strip():
        raise ValueError(f'--topic {text!r} is not SRC:=DST (e.g. /front_camera/image_raw/compressed:='
                         '/camera/image_rect/compressed)')
    return source.strip(), target.strip()


def source_topic(image_topic: str, remaps: dict[str, str]) -> str:
    """The bag topic whose frames go onto ``image_topic``: the remap's SRC onto it, or itself.
    The replay feeds one camera, so a remap onto any other topic is a mistake and refused."""
    elsewhere = {src: dst for src, dst in remaps.items() if dst != image_topic}
    if elsewhere:
        src, dst = next(iter(elsewhere.items()))
        raise ValueError(f'--topic {src}:={dst}: {dst!r} is not the detector\'s input topic {image_topic!r} '
                         '(ros_integration.input_topic, with /compressed for image_transport compressed, '
                         'from --config)')
    onto = [src for src, dst in remaps.items() if dst == image_topic]
    if len(onto) > 1:
        raise ValueError(f'--topic: {onto} are all remapped onto {image_topic!r}; the replay feeds one '
                         'camera')
    return onto[0] if onto else image_topic


@dataclass(frozen=True)
class ReplaySummary:
    output: Path
    published: int
    answered: int
    seconds: float
    damage: str | None  # where damage in the input bag ended the replay early, if it did


class _Recorder:
    """The output bag. Answers arrive on the executor thread and wait in ``pending``; every write
    happens on the thread that opened the bag (sqlite3 connections must stay on their thread)."""

    def __init__(self, path: Path, storage: str, detections_topic: str) -> None:
        store = typestore()
        self.writer = open_writer(path, storage)
        self.detections = self.writer.add_connection(detections_topic, DETECTIONS, typestore=store)
        self.references = self.writer.add_connection(TIME_REFERENCE_TOPIC, TIME_REFERENCE, typestore=store)
        self.changed = threading.Condition()
        self.first_stamp: int | None = None  # answers to frames stamped earlier are warm-up answers
        self.warmup_answers = 0
        self.answered: set[int] = set()      # replay stamps of recorded answers
        self.pending: list[tuple[int, bytes]] = []

    def on_detections(self, data: bytes) -> None:
        """Executor thread: note the answer; never raise (that would stop the executor)."""
        received = time.time_ns()
        try:
            stamp = stamp_ns(typestore().deserialize_cdr(data, DETECTIONS))
        except Exception as exc:  # rosbags raises assorted errors on bad CDR
            log.warning('an answer that is not a valid %s was ignored: %r', DETECTIONS, exc)
            return
        with self.changed:
            if self.first_stamp is None or stamp < self.first_stamp:
                self.warmup_answers += 1
            else:
                self.pending.append((received, data))
                self.answered.add(stamp)
            self.changed.notify_all()

    def flush(self) -> None:
        with self.changed:
            pending, self.pending = self.pending, []
        for received, data in pending:
            self.writer.write(self.detections, received, data)

    def reference(self, stamp: int, frame_id: str, original: int, source: str) -> None:
        data = typestore().serialize_cdr(time_reference_message(stamp, frame_id, original, source),
                                         TIME_REFERENCE)
        with self.changed:
            if self.first_stamp is None:
                self.first_stamp = stamp
        self.writer.write(self.references, stamp, bytes(data))
        self.flush()

    def wait(self, predicate, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout=timeout)

    def close(self) -> None:
        self.flush()
        self.writer.close()


def _restamped(msg: object, stamp: int) -> bytes:
    """The frame (Image or CompressedImage) serialized with a new header stamp; ``msg`` itself keeps
    its bag stamp."""
    restamped = dataclasses.replace(msg, header=header(stamp, msg.header.frame_id))  # type: ignore[attr-defined]
    return bytes(typestore().serialize_cdr(restamped, restamped.__msgtype__))  # type: ignore[attr-defined]


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def replay(bag_path: str | Path, output: str | Path, *, image_topic: str = '/camera/image_rect',
           detections_topic: str = '/object_detections', qos: QosSpec = SENSOR_QOS, rate: float = 1.0,
           lockstep: bool = False, max_rate_hz: float = 0.0, answer_timeout: float = 1.0,
           ready_timeout: float = 60.0, tail_timeout: float = 2.0, storage: str = 'mcap',
           progress: bool = True, remaps: dict[str, str] | None = None) -> ReplaySummary:
    """Replay ``bag_path`` into the ROS graph this process's environment selects (ROS_DOMAIN_ID...).

    The frames published on ``image_topic`` come from the bag's topic of that name, or from the
    SRC of the ``remaps`` entry {SRC: image_topic}; Image or CompressedImage, as the bag holds them.

    ``max_rate_hz`` (lockstep only): never send faster than this, the detector's own rate cap
    (runtime.inference_frequency), which would otherwise drop every frame sent too soon.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CompressedImage, Image
    from vision_msgs.msg import Detection2DArray

    from isaac_trt_perception.qos import profile

    if rate <= 0:
        raise ValueError(f'rate must be positive, got {rate}')
    bag = Bag(bag_path)
    source = source_topic(image_topic, dict(remaps or {}))
    frame_type = bag.topics.get(source, IMAGE)  # a missing topic: the reader's error names the bag's
    if frame_type not in FRAME_TYPES:
        raise BagError(f'{bag.path}: topic {source!r} has message type {frame_type!r}; a camera topic '
                       f'carries {" or ".join(FRAME_TYPES)}')
    frames = bag.stamped(source, frame_type)
    first = next(frames, None)
    if first is None:
        raise BagError(f'{bag.path}: topic {source!r} has no readable frames')
    if source != image_topic:
        log.info('frames of %s (%s) go onto %s', source, frame_type, image_topic)
    output = Path(output)
    if output.exists():
        raise FileExistsError(f'{output}: exists already; bags are never overwritten')
    recorder = _Recorder(output, storage, detections_topic)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('perception_replay', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    message_class = CompressedImage if frame_type == COMPRESSED_IMAGE else Image
    publisher = node.create_publisher(message_class, image_topic, profile(qos))
    # A deep queue on the recording side only, so that a slow bag write never loses an answer.
    node.create_subscription(Detection2DArray, detections_topic, recorder.on_detections,
                             profile(qos, depth=1000), raw=True)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    published = 0
    started = time.monotonic()
    try:
        _warm_up(publisher, first[1], recorder, timeout=ready_timeout, image_topic=image_topic,
                 detections_topic=detections_topic)
        source = str(bag.path)
        origin_stamp, origin_clock = stamp_ns(first[1]), time.monotonic()
        with tqdm(total=bag.counts.get(source), desc=f'replaying {bag.path.name}', unit='frame',
                  disable=not progress) as bar:
            sent_clock = -1e9
            for msg in _frames(first[1], frames):
                original = stamp_ns(msg)
                if not lockstep:
                    _sleep_until(origin_clock + (original - origin_stamp) / 1e9 / rate)
                elif max_rate_hz > 0:
                    _sleep_until(sent_clock + 1.0 / max_rate_hz)
                sent_clock = time.monotonic()
                stamp = time.time_ns()
                recorder.reference(stamp, msg.header.frame_id, original, source)  # type: ignore[attr-defined]
                publisher.publish(_restamped(msg, stamp))
                published += 1
                bar.update()
                if lockstep:
                    recorder.wait(lambda s=stamp: s in recorder.answered, answer_timeout)
        recorder.wait(lambda: len(recorder.answered) >= published, tail_timeout)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        spinner.join(timeout=5.0)
        recorder.close()
    summary = ReplaySummary(output, published, len(recorder.answered), time.monotonic() - started, bag.damage)
    log.info('%s: published %d frames, %d answered, in %.1f s', output, published, summary.answered,
             summary.seconds)
    return summary


def _frames(first: object, rest):
    yield first
    for _, msg in rest:
        yield msg


def _warm_up(publisher, frame: object, recorder: _Recorder, *, timeout: float, image_topic: str,
             detections_topic: str) -> None:
    """Repeat ``frame`` until the detector answers once (it may still be loading its model)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if publisher.get_subscription_count() > 0:
            publisher.publish(_restamped(frame, time.time_ns()))
        if recorder.wait(lambda: recorder.warmup_answers > 0, WARMUP_PERIOD):
            log.info('detector answered on %s after %.1f s', detections_topic,
                     timeout - (deadline - time.monotonic()))
            # A pause, so that the detector's rate cap does not count the first frame against
            # the warm-up frame just before it.
            time.sleep(WARMUP_PERIOD)
            return
    raise ReplayError(f'no answer on {detections_topic!r} to frames on {image_topic!r} within {timeout:g} s '
                      f'({publisher.get_subscription_count()} subscriber(s) on {image_topic!r}); is the '
                      'detector running, in the same ROS_DOMAIN_ID, with the large-frame middleware profile?')
