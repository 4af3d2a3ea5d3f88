"""Camera-sized frames between two processes over the real middleware (Fast DDS).

A camera process publishes frames at 30 Hz with the cameras' QoS (best effort, keep last,
depth 1); a detector process answers each with a vision_msgs/Detection2DArray carrying the
frame's header. Without the project's Fast DDS profile almost none of these frames arrive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PEER = Path(__file__).with_name('camera_peer.py')
FRAMES = 90
MIN_DELIVERY = 0.95


@pytest.mark.parametrize(('width', 'height', 'encoding'), [(640, 480, 'rgb8'), (1280, 720, 'bgr8')])
def test_frames_and_detections_cross_processes(tmp_path, ros_env, width, height, encoding):
    detector_out, camera_out = tmp_path / 'detector.json', tmp_path / 'camera.json'
    size = ['--width', str(width), '--height', str(height), '--encoding', encoding]
    detector = subprocess.Popen([sys.executable, str(PEER), 'detector', '--out', str(detector_out),
                                 '--duration', '25', *size], env=ros_env)
    try:
        subprocess.run([sys.executable, str(PEER), 'camera', '--out', str(camera_out),
                        '--frames', str(FRAMES), *size], env=ros_env, check=True, timeout=60)
    finally:
        detector.wait(timeout=60)
    assert detector.returncode == 0

    sent = [tuple(s) for s in json.loads(camera_out.read_text())['sent']]
    answers = json.loads(camera_out.read_text())['answers']
    frames = json.loads(detector_out.read_text())['frames']
    assert len(sent) == FRAMES

    received = {(f[0], f[1]) for f in frames}
    assert len(received & set(sent)) / FRAMES >= MIN_DELIVERY, f'{len(frames)} of {FRAMES} frames arrived'
    for sec, nanosec, frame_id, w, h, enc, nbytes in frames:
        assert (sec, nanosec) in sent
        assert (frame_id, w, h, enc, nbytes) == ('camera_optical_frame', width, height, encoding,
                                                 width * height * 3)

    answered = {(a[0], a[1]) for a in answers}
    assert len(answered & set(sent)) / FRAMES >= MIN_DELIVERY, f'{len(answers)} of {FRAMES} answers arrived'
    assert all(a[2] == 'camera_optical_frame' for a in answers)
