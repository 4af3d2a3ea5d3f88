"""The node end to end: ``perception-node-bench`` (``perception_bench.node_run``) run several
times per backend and frame size, each run in its own processes: transport floor (publisher ->
subscriber, no node), inference (the node's own, and in-process for comparison), end to end
through the node process, and the node's overhead."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from perception_bench.node_run import OVERHEAD_TARGET_MS
from perception_core.backends.gpu import torch_cuda_available

from .stats import spread

log = logging.getLogger(__name__)
SIZES = ((640, 480), (1280, 720))
E2E_MARGIN_MS = 1.5  # target on the GPU device: end to end p50 <= transport floor p50 + this
RUN_TIMEOUT_S = 180


def node_backends(bundle_dir: Path) -> list[tuple[str, Path]]:
    """(backend, model file) the node is measured with: the CUDA path with a GPU; without one the
    two CPU backends the issue names, ONNX Runtime and PyTorch (TorchScript)."""
    if torch_cuda_available():
        return [('torch_cuda', bundle_dir / 'model.ts')]
    return [('onnxruntime', bundle_dir / 'model.onnx'), ('torchscript', bundle_dir / 'model.ts')]


def _one_run(
    config: Path, backend: str, model: Path, width: int, height: int, *, seconds: float, folder: Path
) -> dict[str, Any]:
    out = folder / f'node_{backend}_{width}x{height}.json'
    command = [
        sys.executable,
        '-m',
        'perception_bench.node_run',
        '--config',
        str(config),
        '--model',
        str(model),
        '--backend',
        backend,
        '--width',
        str(width),
        '--height',
        str(height),
        '--seconds',
        str(seconds),
        '-o',
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(
            f'perception-node-bench {backend} {width}x{height} exited with {done.returncode}: '
            f'{(done.stderr or done.stdout)[-2000:]}'
        )
    return json.loads(out.read_text())


def summarise(runs: list[dict[str, Any]], margin_ms: float | None) -> dict[str, Any]:
    """Median and range over runs of each stage's p50; the end-to-end target where one applies."""

    def stage(pick: Any) -> dict[str, Any]:
        return spread([pick(r) for r in runs])

    summary: dict[str, Any] = {
        'backend': runs[0]['backend'],
        'frame': runs[0]['frame'],
        'rate_hz': runs[0]['rate_hz'],
        'transport_floor_p50_ms': stage(lambda r: r['transport_floor']['p50_ms']),
        # the node's own infer stage: what the overhead subtracts (perception_bench.node_run)
        'inference_p50_ms': stage(lambda r: r['inference_in_node_p50_ms']),
        'inference_in_process_p50_ms': stage(lambda r: r['inference']['infer']['p50_ms']),
        'preprocess_p50_ms': stage(lambda r: r['inference']['preprocess']['p50_ms']),
        'postprocess_p50_ms': stage(lambda r: r['inference']['postprocess']['p50_ms']),
        'end_to_end_p50_ms': stage(lambda r: r['end_to_end']['p50_ms']),
        'end_to_end_p99_ms': stage(lambda r: r['end_to_end']['p99_ms']),
        'node_overhead_p50_ms': stage(lambda r: r['node_overhead_p50_ms']),
        'answered_fraction': stage(lambda r: r['end_to_end']['answered_fraction']),
    }
    summary['overhead_target'] = {
        'max_ms': OVERHEAD_TARGET_MS,
        'met': summary['node_overhead_p50_ms']['median'] <= OVERHEAD_TARGET_MS,
    }
    if margin_ms is not None:
        floor, e2e = summary['transport_floor_p50_ms']['median'], summary['end_to_end_p50_ms']['median']
        summary['target'] = {
            'end_to_end_max_ms': round(floor + margin_ms, 4),
            'margin_ms': margin_ms,
            'met': e2e <= floor + margin_ms,
            'over_by_ms': round(max(0.0, e2e - floor - margin_ms), 4),
        }
    return summary


def measure(config: Path, bundle_dir: Path, repeats: int, seconds: float) -> dict[str, Any]:
    """Results by "WIDTHxHEIGHT backend"."""
    margin = E2E_MARGIN_MS if torch_cuda_available() else None
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix='bench-node-') as tmp:
        for backend, model in node_backends(bundle_dir):
            for width, height in SIZES:
                key = f'{width}x{height} {backend}'
                try:
                    runs = [
                        _one_run(config, backend, model, width, height, seconds=seconds, folder=Path(tmp))
                        for _ in range(repeats)
                    ]
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    log.error('node bench %s: %s', key, exc)
                    results[key] = {'error': str(exc), 'model': str(model)}
                    continue
                results[key] = {**summarise(runs, margin), 'model': str(model), 'runs': runs}
    return {'seconds_per_phase': seconds, 'sizes': results}
