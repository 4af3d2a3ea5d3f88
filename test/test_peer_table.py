"""The peer table's shared half, here on the CPU: rendering peers.json (Markdown, Pareto front and
plot) and the CPU timing tools/peer_table.py applies to every model, on a foreign ONNX model
imported as a user would (the committed YOLO26 fixture). Training and the GPU timer run on the
device only (tools/peer_table_device.sh)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2

WORKSPACE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(WORKSPACE / 'tools'))

from perception_bench.peers import main, markdown, pareto_front  # noqa: E402

PEERS = {
    'machine': 'NVIDIA H200, 16 CPU cores', 'budget_minutes': 5, 'training': 'all at once',
    'heldout': 'synth_test', 'stages': {},
    'models': [
        {'name': 'YOLO11n', 'kind': 'ultralytics', 'parameters': 2.58e6, 'input': '320x320', 'epochs': 40,
         'map50_95': 0.85, 'map50': 0.98, 'gpu_network_ms': 1.06, 'cpu_frame_ms': 19.9},
        {'name': 'ours tiny n', 'kind': 'ours', 'parameters': 0.17e6, 'input': '320x256', 'epochs': 21,
         'map50_95': 0.78, 'map50': 0.97, 'gpu_network_ms': 0.26, 'cpu_frame_ms': 8.0},
        {'name': 'ours resnet18 n', 'kind': 'ours', 'parameters': 11.25e6, 'input': '320x256', 'epochs': 16,
         'map50_95': 0.90, 'map50': 0.99, 'gpu_network_ms': 0.9, 'cpu_frame_ms': None},
        {'name': 'slow and worse', 'kind': 'ours', 'parameters': 3e6, 'input': '320x256', 'epochs': 3,
         'map50_95': 0.5, 'map50': 0.8, 'gpu_network_ms': 2.0, 'cpu_frame_ms': 30.0},
    ]}


def test_the_pareto_front_keeps_only_models_nothing_beats_on_both():
    assert pareto_front(PEERS['models'], 'gpu_network_ms') == ['ours tiny n', 'ours resnet18 n']
    # on the CPU the ResNet-18 has no figure: it takes no part, YOLO11n joins the front
    assert pareto_front(PEERS['models'], 'cpu_frame_ms') == ['ours tiny n', 'YOLO11n']


def test_peers_json_renders_as_a_table_and_a_plot(tmp_path: Path, capsys):
    (tmp_path / 'peers.json').write_text(json.dumps(PEERS))
    assert main([str(tmp_path / 'peers.json')]) == 0
    table = (tmp_path / 'table.md').read_text()
    rows = [line for line in table.splitlines() if line.startswith('| ') and '---' not in line][1:]
    assert [r.split(' | ')[0] for r in rows] == ['| ours resnet18 n', '| YOLO11n', '| ours tiny n',
                                                 '| slow and worse']  # best held-out mAP first
    assert '| YOLO11n | 2.58 M | 320x320 | 40 | 0.850 | 0.980 | 1.06 ms | 19.9 ms |  |' in table
    assert '| ours resnet18 n |' in table and 'not measured' in rows[0]
    image = cv2.imread(str(tmp_path / 'pareto.png'))
    assert image is not None and image.shape[1] > 1000  # two panels side by side
    assert markdown(PEERS) == table
    assert main([str(tmp_path / 'missing.json')]) == 2


def test_the_cpu_frame_timing_takes_an_imported_foreign_model(tmp_path: Path):
    import peer_table  # tools/: Ultralytics is imported only inside its device stages

    from perception_core.bundle_import import import_model

    fixture = WORKSPACE / 'src/perception_core/test/fixtures/foreign/yolo26_small_end2end.onnx'
    bundle = import_model(fixture, tmp_path / 'yolo26')
    assert peer_table.cpu_frame_ms(bundle) > 0


def test_our_rows_carry_the_validation_curve_of_a_real_run(tmp_path: Path):
    """peers.json keeps each member's per-epoch validation (from the run's own history.json), so
    the curve comes back from the device even when the archive of logs does not."""
    import subprocess

    import peer_table

    from perception_trainer.generate import generate_dataset

    frames = generate_dataset(tmp_path / 'set', 8, seed=31, size=(160, 128), classes=('ball', 'cone'),
                              workers=1, progress=False)
    run = tmp_path / 'runs' / 'tiny_n'
    subprocess.run([sys.executable, '-m', 'perception_trainer.train', '--train-data', str(frames),
                    '--val-data', str(frames), '--epochs', '2', '--batch-size', '4', '--workers', '0',
                    '--device', 'cpu', '--input-size', '160x128', '--out', str(run)], check=True,
                   capture_output=True, timeout=300)
    curve = peer_table.validation_curve(run)
    history = json.loads((run / 'history.json').read_text())
    assert [point['epoch'] for point in curve] == [record['epoch'] for record in history] and len(curve) == 2
    assert [point['val_map'] for point in curve] == [record['mAP'] for record in history]
    assert all(point['images_per_s'] > 0 and point['seconds'] is not None for point in curve)
    assert peer_table.validation_curve(tmp_path / 'no_run') == []
