"""frame_source's shared schedule (--start-at): sources given the same start publish in step, as
cameras triggered together; the cameras bench's ``--trigger together`` rests on it. Two real
processes, each publishing over DDS; their logs of the stamps they sent are compared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from perception_bench.frame_source import image_fields, save_frames

RATE = 10.0  # Hz: a 100 ms period, so a loaded CI machine's scheduling stays well inside it
TOLERANCE_S = 0.03


def test_sources_given_one_start_publish_in_step(tmp_path):
    npz = save_frames(tmp_path / 'frames.npz', [image_fields(np.zeros((48, 64, 3), np.uint8), 'rgb8')] * 3)
    start_at = time.time() + 3.0
    env = {**os.environ, 'ROS_DOMAIN_ID': str(150 + os.getpid() % 50)}
    sources = [subprocess.Popen([sys.executable, '-m', 'perception_bench.frame_source', str(npz),
                                 '--topic', f'/schedule_test/cam{i}', '--rate', str(RATE), '--repeat', '2',
                                 '--wait-for', '0', '--start-at', f'{start_at:.6f}',
                                 '--log', str(tmp_path / f'cam{i}.json')], env=env)
               for i in range(2)]
    for source in sources:
        assert source.wait(timeout=120) == 0
    stamps = [np.array([s['stamp_ns'] for s in json.loads((tmp_path / f'cam{i}.json').read_text())]) * 1e-9
              for i in range(2)]
    assert [len(s) for s in stamps] == [6, 6]
    period = 1.0 / RATE
    for sent in stamps:  # every frame on a slot of the shared schedule: start_at + k * period
        slots = np.round((sent - start_at) / period)
        assert slots[0] >= 0 and np.all(np.diff(slots) == 1), slots
        assert np.all(np.abs(sent - (start_at + slots * period)) < TOLERANCE_S), sent - start_at
    # the same slots, frame for frame: in step with each other, not merely with the clock
    assert np.all(np.abs(stamps[0] - stamps[1]) < TOLERANCE_S)
