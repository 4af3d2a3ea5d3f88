"""Scores the YOLO11n that tools/foreign_models.py trained on the device three ways on the same 500
held-out frames (seed 3), and writes bench/results/foreign_models_h200.json:

1. Ultralytics' own ``val()`` (its AP code, the .pt on the GPU): from the device's reference.json;
2. Ultralytics' own predictions from the exported ONNX (its AutoBackend, letterbox and NMS, conf
   0.001), scored here by pycocotools (perception_core.coco_metrics);
3. ``perception-bundle import`` + ``perception-eval`` of the same ONNX (the node's preprocessing and
   yolo_v8 decoder, score threshold 0.001), pycocotools likewise.

    tools/in_env.sh perception-synth --out out/foreign/heldout --num-images 500 --seed 3
    tools/in_env.sh perception-bundle import out/foreign/yolo11n_synth.onnx --out out/foreign/b_yolo11n_synth
    tools/in_env.sh perception-eval --bundle out/foreign/b_yolo11n_synth --data out/foreign/heldout \\
        --out out/foreign/eval_yolo11n --score-threshold 0.001
    tools/in_env.sh python tools/foreign_models_score.py --foreign out/foreign

Node figures (perception-node-bench on the imported bundle and the shipped one) are added where
``node_bench_yolo11n.json`` / ``node_bench_shipped.json`` are in --foreign.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from perception_core import atomic
from perception_core.coco_metrics import evaluate
from perception_core.decode import Detections
from perception_trainer.readers import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--foreign', type=Path, default=Path('out/foreign'))
    parser.add_argument('--out', type=Path, default=Path('bench/results/foreign_models_h200.json'))
    args = parser.parse_args()
    reference = json.loads((args.foreign / 'reference.json').read_text())
    predictions = json.loads((args.foreign / 'heldout_predictions.json').read_text())
    ours = json.loads((args.foreign / 'eval_yolo11n' / 'eval.json').read_text())
    classes = list(ours['per_class_AP'])  # the bundle's classes, in its order
    heldout = load_dataset(args.foreign / 'heldout', 'auto', classes)
    index = {Path(s.image).name: i for i, s in enumerate(heldout.samples)}
    rows: dict[int, list] = defaultdict(list)
    for p in predictions['predictions']:
        rows[index[Path(p['file']).name]].append((*p['box'], p['score'], p['class']))
    found = {i: Detections(np.array([r[:4] for r in v], np.float32), np.array([r[4] for r in v], np.float32),
                           np.array([r[5] for r in v], np.int64)) for i, v in rows.items()}
    theirs = evaluate(heldout.samples, classes, found).summary()
    result = {
        'machine': {'trained_on': reference['versions']['gpu'], 'scored_on': 'this 2-core CPU machine'},
        'versions': reference['versions'],
        'model': {k: reference['yolo11n'][k] for k in ('parameters', 'train_minutes', 'imgsz')},
        'heldout': {'images': len(heldout.samples), 'seed': 3, 'size': '640x480'},
        'ultralytics_val': reference['yolo11n']['val_heldout'],
        'ultralytics_onnx_predictions_pycocotools': {
            'predict': predictions['predict'], 'map50_95': theirs['mAP'], 'map50': theirs['mAP50'],
            'map75': theirs['mAP75']},
        'perception_eval_imported': {'score_threshold': ours['score_threshold'], 'map50_95': ours['mAP'],
                                     'map50': ours['mAP50'], 'map75': ours['mAP75'],
                                     'per_class_ap': ours['per_class_AP']},
    }
    for name in ('yolo11n', 'shipped'):
        bench = args.foreign / f'node_bench_{name}.json'
        if bench.is_file():
            b = json.loads(bench.read_text())
            result[f'node_bench_{name}'] = {
                'frame': b['frame'], 'rate_hz': b['rate_hz'], 'backend': b['backend'],
                'answered': b['end_to_end']['answered'], 'sent': b['end_to_end']['sent'],
                'e2e_p50_ms': b['end_to_end'].get('p50_ms'), 'e2e_p99_ms': b['end_to_end'].get('p99_ms'),
                'infer_in_node_p50_ms': b['inference_in_node_p50_ms'],
                'transport_floor_p50_ms': b['transport_floor'].get('p50_ms')}
    atomic.write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ('versions',)}, indent=1)[:3000])


if __name__ == '__main__':
    main()
