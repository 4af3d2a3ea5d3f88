"""torch_cuda: N cameras' frames as one batch (Detector.detect_batch) against N one-frame calls,
frame -> detections, on the GPU device (the GPU half of the multi-camera figures without ROS):

    run  command="PYTHONPATH=src/perception_core:src/perception_bench python3 tools/camera_batch_gpu.py"

Prints a JSON document: per N (1, 2, 4, 8) the median milliseconds per batch and per frame, both ways.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from perception_bench.backends import camera_frames
from perception_bench.cuda_model import runnable_bundle
from perception_core.backends import BackendOptions
from perception_core.backends.torch_cuda import TorchCudaBackend
from perception_core.bundle import load_bundle
from perception_core.decode import Thresholds
from perception_core.detector import Detector

SHIPPED = Path(__file__).resolve().parents[1] / 'models/detector'
REPEATS = 300


def median_ms(call, repeats: int = REPEATS) -> float:
    for _ in range(20):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> int:
    bundle, note = runnable_bundle(load_bundle(SHIPPED), Path(tempfile.mkdtemp()))
    options = BackendOptions(precision='fp16', max_batch_size=8)
    backend = TorchCudaBackend(bundle.torchscript_path, bundle, options)
    detector = Detector(bundle, backend, Thresholds.resolve(bundle.postprocess))
    frames = camera_frames(bundle, 8, 640, 480)
    rows = {}
    for n in (1, 2, 4, 8):
        chunk = frames[:n]
        batched = median_ms(lambda c=chunk: detector.detect_batch(c))
        one_by_one = median_ms(lambda c=chunk: [detector.detect(f) for f in c])
        rows[n] = {'batch_ms': round(batched, 3), 'batch_ms_per_frame': round(batched / n, 3),
                   'one_frame_calls_ms': round(one_by_one, 3),
                   'one_frame_calls_ms_per_frame': round(one_by_one / n, 3)}
    json.dump({'gpu': torch.cuda.get_device_name(), 'torch': torch.__version__, 'model': note,
               'frames': '640x480 rgb8, shipped bundle, fp16, CUDA graphs', 'repeats': REPEATS,
               'cameras': rows}, sys.stdout, indent=1)
    print()
    backend.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
