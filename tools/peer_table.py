"""The peer table in ONE call of the GPU device (issue 17): Ultralytics YOLO11n and our detectors
trained on the same data, at the same time, on the same GPU, for the same wall-clock budget; scored
by the same evaluation (perception-eval on the held-out seed-3 set, through the node's
preprocessing, ONNX Runtime and decoders: YOLO11n's ONNX enters through perception-bundle import);
timed by the same harness (perception_bench.peers.graph_network_ms: batch 1, fp16, one CUDA graph,
the network alone; and a 640x480 frame -> detections on ONNX Runtime CPU through the node's
Detector). Writes peers.json, table.md and pareto.png into --out, and each model's logs.

    bash tools/device_wheels.sh peers        # here: .whl_peers (Ultralytics + training wheels)
    run  carry=[".whl_peers"]  command="bash tools/peer_table_device.sh"

Ultralytics and torchvision import only on the device (see tools/foreign_models.py, whose data
writer, training call and patches this reuses). Every stage is recorded in peers.json as it ends;
a failed stage is recorded and the others go on.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import foreign_models  # tools/: the data writer, Ultralytics' training call, its patches

from perception_bench.backends import VARIANTS, Effort, measure
from perception_bench.peers import graph_network_ms, render
from perception_bench.stats import median_of
from perception_core.bundle import load_bundle
from perception_core.synth import DEFAULT_CLASSES

HELD_OUT = 'synth_test'  # seed 3, 500 frames: never trained or validated on
YOLO_IMGSZ = 320


class Peers(foreign_models.Report):
    """peers.json, rewritten after every stage (foreign_models' stage runner: a failed stage is
    recorded and the others go on)."""

    def __init__(self, out: Path, minutes: float, workers: int, ours_args: str = '') -> None:
        super().__init__(out)
        self.path = out / 'peers.json'
        self.data = {
            'machine': f'{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores',
            'budget_minutes': minutes,
            'training': f'all at the same time on one GPU, {workers} loader processes each, from scratch',
            'heldout': f'{HELD_OUT} (seed 3, 500 frames, 640x480), perception-eval (pycocotools)',
            'models': [], 'stages': {}}
        if ours_args:
            self.data['ours_options'] = ours_args  # on top of config/train_default.yaml


def member(spec: str) -> tuple[str, str, str, str | None]:
    """'resnet18', 'tiny:m' or 'tiny:m@640x480' -> (backbone, size, name of its run, bundle and log,
    input size or None for the recipe's); size n by default."""
    model, _, input_size = spec.partition('@')
    backbone, _, size = model.partition(':')
    size = size or 'n'
    name = f'{backbone}_{size}' + (f'_{input_size}' if input_size else '')
    return backbone, size, name, input_size or None


def start_ours(spec: str, args: argparse.Namespace, data_root: Path, workers: int) -> subprocess.Popen:
    """The default recipe (config/train_default.yaml) on one backbone and size, as its own process:
    trains, exports, scores the held-out set into model.json."""
    backbone, size, name, input_size = member(spec)
    command = [sys.executable, '-m', 'perception_trainer.recipe', '--backbone', backbone, '--size', size,
               '--device', 'cuda', '--workers', str(workers), '--time-limit-minutes', str(args.minutes),
               '--data-dir', str(data_root), '--out', str(args.work / 'runs' / name),
               '--bundle', str(args.work / 'bundles' / name)]
    command += ['--input-size', input_size] if input_size else []
    command += shlex.split(args.ours_args)
    log = (args.out / f'{name}.log').open('w')
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def cpu_frame_ms(bundle_dir: Path) -> float | None:
    """640x480 frame -> detections on ONNX Runtime CPU through the node's Detector (p50)."""
    variants = [v for v in VARIANTS if v.key == 'onnxruntime_cpu']
    found = measure(load_bundle(bundle_dir), [1], Effort(repeats=3), variants)['variants']['onnxruntime_cpu']
    return median_of(found['frame_640x480']['frame_to_detections'])


def validation_curve(run_dir: Path) -> list[dict]:
    """Per epoch from the run's history.json: what the README's curves are drawn from, kept in
    peers.json so it comes back even when the archive of logs does not."""
    path = run_dir / 'history.json'
    history = json.loads(path.read_text()) if path.is_file() else []
    keys = {'epoch': 'epoch', 'images_per_s': 'images_per_s', 'mAP': 'val_map', 'mAP50': 'val_map50'}
    return [{**{name: record.get(key) for key, name in keys.items()},
             'seconds': round(record['elapsed_s']) if 'elapsed_s' in record else None} for record in history]


def ours_row(spec: str, work: Path) -> dict:
    backbone, size, name, input_size = member(spec)
    bundle_dir = work / 'bundles' / name
    document = json.loads((bundle_dir / 'model.json').read_text())
    held_out = document['metrics']['held_out']
    image = document['input']
    module = torch.jit.load(str(bundle_dir / 'model.ts'), map_location='cuda')
    label = f'ours {backbone} {size}' + (f' @{input_size}' if input_size else '')
    return {'name': label, 'kind': 'ours', 'parameters': document['model']['parameters'],
            'gflops': document['model']['gflops'], 'input': f"{image['width']}x{image['height']}",
            'epochs': document['training']['epochs'], 'map50_95': held_out['mAP'], 'map50': held_out['mAP50'],
            'gpu_network_ms': graph_network_ms(module, (1, 3, image['height'], image['width'])),
            'cpu_frame_ms': cpu_frame_ms(bundle_dir), 'per_class_AP': held_out.get('per_class_AP'),
            'validation': validation_curve(work / 'runs' / name)}


def yolo_row(work: Path, data_root: Path, out: Path) -> dict:
    from ultralytics import YOLO

    from perception_core.bundle_import import import_model
    from perception_trainer.evaluate import evaluate_bundle

    last = work / 'yolo11n' / 'weights' / 'last.pt'
    model = YOLO(str(last))
    exported = model.export(format='onnx', imgsz=YOLO_IMGSZ, simplify=False, opset=17, dynamic=False,
                            device='cpu')
    bundle_dir = import_model(exported, work / 'bundles' / 'yolo11n')
    report = evaluate_bundle(bundle_dir, data_root / HELD_OUT, out / 'yolo11n_eval', samples=0,
                             progress=False)
    val = foreign_models.ultralytics_val(model, data_root / 'yolo' / 'data.yaml', YOLO_IMGSZ)
    network = YOLO(str(last)).model.fuse()
    results = work / 'yolo11n' / 'results.csv'  # a row per epoch (last.pt says -1 once finished)
    epochs = len(results.read_text().splitlines()) - 1 if results.is_file() else None
    parameters = sum(p.numel() for p in network.parameters())
    return {'name': 'YOLO11n', 'kind': 'ultralytics', 'parameters': parameters,
            'input': f'{YOLO_IMGSZ}x{YOLO_IMGSZ}', 'epochs': epochs,
            'map50_95': report['mAP'], 'map50': report['mAP50'], 'ultralytics_val_heldout': val,
            'gpu_network_ms': graph_network_ms(network, (1, 3, YOLO_IMGSZ, YOLO_IMGSZ)),
            'cpu_frame_ms': cpu_frame_ms(bundle_dir)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--work', type=Path, default=Path('/tmp/peers'))
    parser.add_argument('--minutes', type=float, default=5.0, help='training budget of every model')
    parser.add_argument('--ours', nargs='+', default=['resnet18', 'tiny:m'],
                        help='our members, BACKBONE or BACKBONE:SIZE (size n by default)')
    parser.add_argument('--workers', type=int, default=0, help='loader processes each (0: cores / models)')
    parser.add_argument('--ours-args', default='', help='more perception-train options for our members, '
                        'e.g. "--batch-size 64 --lr 0.0042 --epochs 80"')
    parser.add_argument('--no-yolo', dest='yolo', action='store_false',
                        help='ours only (a longer run of our members; YOLO11n\'s row from an earlier table)')
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    workers = args.workers or max(2, (os.cpu_count() or 8) // (len(args.ours) + args.yolo) - 1)
    from ultralytics import YOLO
    from ultralytics.engine import trainer
    trainer.check_amp = lambda *a, **k: True  # as foreign_models.py: no network for its AMP self-test
    trainer.BaseTrainer.read_results_csv = foreign_models._results_csv
    peers = Peers(args.out, args.minutes, workers, args.ours_args)
    data_root = args.work / 'data'
    if peers.stage('data', foreign_models.write_data, data_root, DEFAULT_CLASSES) is None:
        return 1
    ours = {spec: start_ours(spec, args, data_root, workers) for spec in args.ours}
    if args.yolo:
        peers.stage('yolo11n_train', foreign_models.train, YOLO('yolo11n.yaml', task='detect'),
                    data_root / 'yolo' / 'data.yaml', args.minutes, imgsz=YOLO_IMGSZ, batch=128,
                    project=args.work, run_name='yolo11n', workers=workers)
    for spec, process in ours.items():
        code = process.wait()
        peers.data['stages'][f'ours_{spec}_recipe'] = {'ok': code == 0, 'exit': code}
    # timing after all training is over: nothing else on the GPU or the CPU
    row = (peers.stage('yolo11n_score_and_time', yolo_row, args.work, data_root, args.out)
           if args.yolo else None)
    if row:
        peers.data['models'].append(row)
    for spec in args.ours:
        row = peers.stage(f'ours_{spec}_score_and_time', ours_row, spec, args.work)
        if row:
            peers.data['models'].append(row)
    peers.save()  # the rows appended above, before render reads the file
    peers.stage('render', render, peers.path, args.out)
    print((args.out / 'table.md').read_text() if (args.out / 'table.md').is_file() else 'no table')
    return 0


if __name__ == '__main__':
    sys.exit(main())
