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
