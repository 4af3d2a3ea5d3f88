"""The benchmark harness on real backends (ONNX Runtime, TorchScript on the CPU here)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from perception_bench.timing import benchmark, latency_stats, time_calls
from perception_core.backends import BackendOptions
from perception_core.bundle import load_bundle
from perception_core.engine.build import open_exactly
from perception_core.engine.frames import scene_frames


def test_latency_stats_are_percentiles_in_milliseconds() -> None:
    stats = latency_stats([i / 1000 for i in range(1, 101)])     # 1..100 ms
    assert stats['p50'] == pytest.approx(50.5)
    assert stats['p90'] == pytest.approx(90.1)
    assert stats['p99'] == pytest.approx(99.01)
    assert stats['min'] == 1.0 and stats['max'] == 100.0 and stats['mean'] == pytest.approx(50.5)
    with pytest.raises(ValueError):
        latency_stats([])


def test_time_calls_warms_up_then_times_each_call() -> None:
    calls: list[int] = []
    synced: list[int] = []
    times = time_calls(calls.append, warmup=3, iterations=5, sync=lambda: synced.append(1))
    assert calls == [0, 1, 2, 0, 1, 2, 3, 4]           # warm-up indices, then the timed ones
    assert len(times) == 5 and all(t >= 0 for t in times)
    assert len(synced) == 6                              # after warm-up, and after every timed call


@pytest.mark.parametrize('name', ['onnxruntime', 'torchscript'])
def test_benchmark_per_batch_size(tiny_bundle: Path, name: str) -> None:
    bundle = load_bundle(tiny_bundle)
    path = bundle.onnx_path if name == 'onnxruntime' else bundle.torchscript_path
    backend = open_exactly(name, path, bundle, BackendOptions())
    report = benchmark(backend, bundle, scene_frames(bundle, 3), [1, 2], warmup=2, iterations=6,
                       progress=False)
    assert report['backend'] == name and report['machine']['logical_cpus'] >= 1
    assert [r['batch_size'] for r in report['results']] == [1, 2]
    for row in report['results']:
        lat = row['latency_ms']
        assert 0 < lat['min'] <= lat['p50'] <= lat['p90'] <= lat['p99'] <= lat['max']
        assert row['throughput_fps'] > 0 and row['iterations'] == 6
    assert report['results'][1]['input'] == 'preprocessed tensor [2, 3, 256, 320]'


def test_a_refused_batch_size_is_reported_not_fatal(tmp_path: Path,
                                                    bundle_writer: Callable[..., Path]) -> None:
    fixed = bundle_writer(tmp_path / 'fixed', dynamic_batch=False)
    bundle = load_bundle(fixed)
    backend = open_exactly('onnxruntime', bundle.onnx_path, bundle, BackendOptions())
    report = benchmark(backend, bundle, scene_frames(bundle, 2), [1, 4], warmup=1, iterations=3,
                       progress=False)
    ok, refused = report['results']
    assert 'latency_ms' in ok and 'error' not in ok
    assert 'error' in refused and 'latency_ms' not in refused


def test_batches_are_distinct_real_frames(tiny_bundle: Path) -> None:
    from perception_bench.timing import batches
    bundle = load_bundle(tiny_bundle)
    made = batches(scene_frames(bundle, 4), bundle, batch_size=2, count=2)
    assert [b.shape for b in made] == [(2, 3, 256, 320)] * 2
    assert not np.array_equal(made[0][0], made[0][1]) and not np.array_equal(made[0], made[1])


def test_benchmark_command_writes_json_and_a_table(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / 'bench.json'
    executable = shutil.which('perception-benchmark')
    assert executable, 'perception-benchmark is not on PATH: make build and source env.sh'
    result = subprocess.run([executable, '--bundle', str(tiny_bundle), '--backend', 'onnxruntime',
                             '--batch-sizes', '1,2', '--warmup', '1', '--iterations', '4', '--frames', '2',
                             '--out', str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert [r['batch_size'] for r in report['results']] == [1, 2]
    assert 'p50 ms' in result.stdout and 'ONNX Runtime' in result.stdout


def test_cores_by_thread_names_each_busy_thread_busiest_first() -> None:
    from perception_bench.cameras import cores_by_thread
    before = {('detector', 1): 1.0, ('python', 2): 5.0, ('python', 3): 0.0}
    after = {('detector', 1): 2.0, ('python', 2): 5.001, ('python', 3): 4.0, ('dds.shm.7', 4): 0.2}
    assert cores_by_thread(before, after, 10.0) == {'dds.shm.7': [0.02], 'detector': [0.1], 'python': [0.4]}
