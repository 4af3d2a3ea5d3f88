"""The shipped bundle on every backend of the node's GPU path, in one short call of the device tool:
ONNX Runtime CPU (the reference), torch_cuda fp32 eager, fp16 eager and fp16 + CUDA graph (the
node's default), each timed network-alone and frame -> detections at 640x480 and checked for
agreement with the reference (perception_bench.backends.measure, the `make bench` backends section
without its full device set-up):

    run carry=[".whl_peers"] command="python3 -m pip install -q --no-index --no-deps
        --target /tmp/site .whl_peers/*.whl; PYTHONPATH=/tmp/site:$PWD/src/perception_core:
        $PWD/src/perception_trainer:$PWD/src/perception_bench python3 tools/backends_device.py"
        (one line, the PYTHONPATH without spaces)

Writes $OUT/shipped_gpu.json (bench/results/shipped_resnet_slim_m_h200.json).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from perception_bench.backends import VARIANTS, Effort, measure
from perception_core.bundle import load_bundle

KEYS = ('onnxruntime_cpu', 'fp32_eager', 'fp16_eager', 'fp16_graph')

if __name__ == '__main__':
    chosen = [v for v in VARIANTS if v.key in KEYS]
    report = measure(load_bundle('models/detector'), [1, 8], Effort(repeats=3), chosen)
    (Path(os.environ.get('OUT', '.')) / 'shipped_gpu.json').write_text(json.dumps(report, indent=1))
    for key, entry in report['variants'].items():
        frame = entry.get('frame_640x480', {})
        p50 = {part: frame.get(part, {}).get('p50_ms', {}).get('median')
               for part in ('backend', 'frame_to_detections')}
        print(key, entry.get('description'), entry.get('error'), p50, entry.get('agreement'))
    print(report['targets'])
