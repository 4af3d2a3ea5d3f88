"""`make bench`'s report: figures from repeated runs, agreement, the Markdown, merging partial runs,
and a real (short) run of the script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKSPACE = Path(__file__).resolve().parents[1]

from perception_bench import report  # noqa: E402
from perception_bench.agreement import agreement, confident_agreement  # noqa: E402
from perception_bench.merge import merge  # noqa: E402
from perception_bench.stats import repeated, spread  # noqa: E402
from perception_core.decode import Detections  # noqa: E402

RESULTS = WORKSPACE / 'bench/results'


def detections(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    array = np.array(rows, np.float32).reshape(-1, 6)
    return Detections(array[:, :4], array[:, 4], array[:, 5].astype(np.int64))


def test_a_figure_is_the_median_run_and_the_range_of_runs():
    assert spread([3.0, 1.0, 2.0]) == {'median': 2.0, 'range': [1.0, 3.0], 'runs': 3}
    runs = iter([[0.001] * 4, [0.003] * 4, [0.002] * 4])
    figure = repeated(lambda: {'latency': next(runs)}, repeats=3, batch_size=8)['latency']
    assert figure['p50_ms'] == {'median': 2.0, 'range': [1.0, 3.0], 'runs': 3}
    assert figure['fps']['median'] == pytest.approx(4000.0)  # 8 images per 2 ms call
    assert figure['calls_per_run'] == 4 and figure['batch_size'] == 8
    with pytest.raises(ValueError):
        spread([])


def test_agreement_counts_mismatches_and_weak_overlaps():
    box = (10, 10, 50, 50, 0.9, 1)
    moved = (14, 10, 54, 50, 0.9, 1)  # IoU 36/44 = 0.82
    same = agreement([detections(box)], [detections(box)])
    assert same['passed'] and same['min_iou'] == 1.0 and same['count_mismatches'] == 0
    assert not agreement([detections(box)], [detections(moved)])['passed']
    extra = agreement([detections(box)], [detections(box, (100, 100, 140, 140, 0.31, 2))])
    assert extra['count_mismatches'] == 1 and not extra['passed']
    other_class = agreement([detections(box)], [detections((10, 10, 50, 50, 0.9, 2))])
    assert other_class['min_iou'] == 0.0 and not other_class['passed']
    # a borderline detection (0.31, threshold 0.3) is ignored when comparing what is clear of it
    assert confident_agreement([detections(box)], [detections(box, (100, 100, 140, 140, 0.31, 2))], 0.32)
    assert not confident_agreement([detections(box)], [detections(box, (100, 100, 140, 140, 0.5, 2))], 0.32)


@pytest.mark.parametrize('name', ['nvidia-h100-80gb-hbm3', 'cpu-amd-epyc-2cores'])
def test_the_committed_results_render(name):
    result = json.loads((RESULTS / f'{name}.json').read_text())
    text = report.markdown(result)
    for heading in (
        '## Backends',
        '## Preprocessing alone',
        '## Node end to end',
        '## Training throughput',
        '## The limit',
    ):
        assert heading in text
    assert 'ONNX Runtime, CPU' in text and 'median [min-max] over 5 runs' in text
    if result['machine'].get('gpu'):
        assert '## Targets' in text and 'measured / floor' in text


def test_a_partial_rerun_replaces_only_its_sections():
    base = json.loads((RESULTS / 'nvidia-h100-80gb-hbm3.json').read_text())
    partial = {
        'machine': {**base['machine'], 'date': 'later'},
        'command': 'python -m perception_bench.run --sections node',
        'node': {'sizes': {}},
        'section_seconds': {'node': 1.0},
    }
    merged = merge(base, partial)
    assert merged['node'] == {'sizes': {}} and merged['backends'] == base['backends']
    assert merged['merged']['node']['date'] == 'later' and merged['section_seconds']['node'] == 1.0
    with pytest.raises(ValueError, match='cannot replace'):
        merge(base, {**partial, 'machine': {'gpu': 'another GPU'}})


def test_bench_run_writes_json_and_markdown(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            '-m',
            'perception_bench.run',
            '--quick',
            '--sections',
            'preprocessing,limit',
            '--machine',
            'test',
            '--out-dir',
            str(tmp_path),
        ],
        cwd=WORKSPACE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / 'test.json').read_text())
    assert result['preprocessing']['sizes']['640x480']['cpu']['p50_ms']['median'] > 0
    assert result['limit']['model']['gflops'] > 0 and result['limit']['model']['convolutions'] > 0
    assert (tmp_path / 'test.md').read_text() in done.stdout
    assert f'wrote {tmp_path / "test.json"}' in done.stdout


def test_the_cameras_and_family_sections_render_with_the_camera_targets():
    """`make bench`'s cameras and family sections as the report shows them; the GPU targets of
    4 cameras at 30 Hz judged from the figures."""
    from perception_bench.report import _cameras, _family, _targets, camera_targets

    def row(n, configuration, answered, cores, floor=None):
        return {'cameras': n, 'configuration': configuration, 'cores_used': cores,
                'transport_floor_p50_ms': floor,
                'per_camera': {f'cam{i}': {'answered_fraction': answered, 'p50_ms': 2.0 + i, 'p99_ms': 9.0}
                               for i in range(n)}}

    cameras = {'frame': '640x480 rgb8', 'model': '/m/model.ts', 'seconds': 6, 'rate_hz': 30,
               'results': [row(1, 'one batching node', 1.0, 0.2),
                           row(4, 'one batching node', 0.995, 0.8, 3.5),
                           row(4, '4 separate nodes', 0.97, 1.6, 3.5)]}
    # answered, CPU, e2e p50 (the worst camera's 5.0 ms) against floor + 2 ms, CPU against 4 nodes
    assert [r[2] for r in camera_targets(cameras)] == ['met'] * 4
    worse = {**cameras, 'results': [row(4, 'one batching node', 0.9, 1.2, 2.0),
                                    row(4, '4 separate nodes', 1.0, 1.0, 2.0)]}
    assert [r[2] for r in camera_targets(worse)] == ['**missed**'] * 4
    assert camera_targets({**cameras, 'rate_hz': 15}) == []  # the targets are for 30 Hz cameras
    # cameras triggered together are judged as well, in rows of their own
    together = {**cameras, 'results': [*cameras['results'],
                                       row(4, 'one batching node, triggered together', 0.995, 0.5, 2.5),
                                       row(4, '4 separate nodes, triggered together', 1.0, 1.0, 2.5)]}
    judged = camera_targets(together)
    assert [r[2] for r in judged] == ['met'] * 4 + ['met', 'met', '**missed**', 'met'], judged
    assert all('triggered together' in r[0] for r in judged[4:])
    family = {'rows': [{'member': {'size': 'n', 'backbone': 'tiny', 'width': 320, 'height': 256},
                        'parameters': 173318, 'gflops': 0.44, 'bundle_mb': 1.7,
                        'onnxruntime_cpu': {'network_p50_ms': 4.4, 'frame_640x480_p50_ms': 5.3},
                        'fp16_graph': {'skipped': 'no CUDA'}},
                       {'member': {'size': 'n', 'backbone': 'resnet18', 'width': 320, 'height': 256},
                        'error': 'ExportError: differs'}]}
    text = '\n'.join(_targets({'cameras': cameras}) + _cameras(cameras) + _family(family))
    assert '| 4 x 30 Hz | one batching node | 0.995 | 5.00 / 9.00 | 3.50 | 0.80 |' in text
    assert '| 1 x 30 Hz | one batching node | 1.000 | 2.00 / 9.00 | n/a | 0.20 |' in text
    assert '| n | tiny | 320x256 | 0.17 M | 0.44 | 1.7 MB | 4.40 / 5.30 ms | not measured here |' in text
    assert 'failed: ExportError: differs' in text
    assert '4 cameras x 30 Hz: one node less CPU than 4 nodes | 0.80 vs 1.60 cores | met' in text
