"""Publish prepared sensor_msgs/Image frames at a fixed rate, stamped at publish time: the camera
stand-in for the node benchmark and the end-to-end tests (a separate process, real DDS).

Frames come from an ``.npz`` written by :func:`save_frames`: each frame is its raw Image fields,
so deliberately broken frames (wrong step, short data, bad encoding) travel as they are. The
stamps actually published are written to ``--log`` as JSON for the receiver to match.

    python -m perception_bench.frame_source FRAMES.npz --topic /camera/image_rect --rate 30
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perception_core.atomic import write_json
from perception_core.interrupt import EXIT_INTERRUPTED
from perception_core.qos import RELIABILITY, QosSpec

TEARDOWN_S = 10.0
ACK_S = 20.0


def save_frames(path: str | Path, frames: Sequence[dict[str, Any]]) -> Path:
    """``frames``: dicts of encoding, height, width, step, is_bigendian, data (bytes/uint8 array)."""
    meta = [{k: f[k] for k in ('encoding', 'height', 'width', 'step', 'is_bigendian')} for f in frames]
    arrays = {f'data{i}': np.frombuffer(bytes(f['data']), np.uint8) for i, f in enumerate(frames)}
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return Path(path)


def image_fields(pixels: np.ndarray, encoding: str) -> dict[str, Any]:
    """The Image fields of a contiguous HxWxC (or HxW) uint8 array."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return {'encoding': encoding, 'height': height, 'width': width, 'step': width * channels,
            'is_bigendian': 0, 'data': np.ascontiguousarray(pixels).tobytes()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('frames', help='.npz from save_frames')
    parser.add_argument('--topic', default='/camera/image_rect')
    parser.add_argument('--frame-id', default='camera_optical_frame')
    parser.add_argument('--rate', type=float, default=30.0, help='frames per second')
    parser.add_argument('--repeat', type=int, default=1, help='times through the frames')
    parser.add_argument('--reliability', default='best_effort', choices=RELIABILITY)
    parser.add_argument('--depth', type=int, default=1)
    parser.add_argument('--wait-for', type=int, default=1, help='subscribers to wait for before starting')
    parser.add_argument('--wait-timeout', type=float, default=30.0)
    parser.add_argument('--log', help='JSON file: the stamp (ns) of every frame published, by index')
    parser.add_argument('--start-at', type=float, default=None,
                        help='wall-clock time (s since the epoch) of the first frame slot: sources given '
                             'the same one publish in step, as cameras triggered together (default: free)')
    args = parser.parse_args(argv)

    import rclpy
    from rclpy.duration import Duration
    from sensor_msgs.msg import Image

    from isaac_trt_perception.qos import profile

    loaded = np.load(args.frames)
    meta = json.loads(str(loaded['meta']))
    messages = []
    for i, fields in enumerate(meta):
        msg = Image(**fields)
        msg.header.frame_id = args.frame_id
        msg.data = loaded[f'data{i}'].tobytes()
        messages.append(msg)

    rclpy.init()
    node = rclpy.create_node('frame_source')
    publisher = node.create_publisher(Image, args.topic, profile(
        QosSpec(reliability=args.reliability, depth=args.depth)))
    deadline = time.monotonic() + args.wait_timeout
    while publisher.get_subscription_count() < args.wait_for and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # discovery completes both ways a little after the match is seen
    published: list[dict[str, int]] = []
    period = 1.0 / args.rate
    start = time.monotonic()
    if args.start_at is not None:  # the first slot of the shared schedule that is still ahead
        ahead = args.start_at - time.time()
        start += ahead % period if ahead < 0 else ahead
    for n in range(len(messages) * args.repeat):
        wait = start + n * period - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        msg = messages[n % len(messages)]
        msg.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(msg)
        published.append({'index': n % len(messages), 'stamp_ns': msg.header.stamp.sec * 10**9
                          + msg.header.stamp.nanosec})
    if args.reliability == 'reliable':
        # A reliable frame still being resent (a 1280x720 frame is dozens of fragments) is
        # dropped with the participant: wait until every subscriber has acknowledged every frame.
        if not publisher.wait_for_all_acked(Duration(seconds=ACK_S)):
            print(f'frame_source: not every subscriber of {args.topic} acknowledged every frame within '
                  f'{ACK_S:.0f} s', file=sys.stderr)
    else:
        time.sleep(0.5)  # let the last frames leave before the participant goes
    if args.log:
        write_json(args.log, published)
    # Fast DDS can busy-wait in the participant's teardown while a discovery callback is in flight
    # (eProsima/Fast-DDS#6513; seen here: a source spinning a core for 15 minutes after its last
    # frame). Everything this process owes is sent and written by now, so a teardown that has not
    # ended within TEARDOWN_S ends the process instead of hanging its caller.
    watchdog = threading.Timer(TEARDOWN_S, _teardown_hung)
    watchdog.daemon = True
    watchdog.start()
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def _teardown_hung() -> None:
    print(f'frame_source: middleware teardown still running after {TEARDOWN_S:g} s '
          '(eProsima/Fast-DDS#6513); exiting, every frame sent and logged', file=sys.stderr, flush=True)
    os._exit(0)


if __name__ == '__main__':
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # Ctrl-C reaches the bench's whole process group: the bench says so
        raise SystemExit(EXIT_INTERRUPTED) from None
