"""The peer comparison: our detectors and an Ultralytics YOLO trained on the same data with the same
wall-clock budget, scored by the same evaluation and timed by the same harness.

``tools/peer_table.py`` runs it on the GPU device (Ultralytics imports only there) and writes
peers.json; this module owns what is shared with it and with the tests here: the one fp16
CUDA-graph network timer used for every model (ours from model.ts, Ultralytics' from its own
PyTorch module), and the rendering of peers.json as a Markdown table and a Pareto plot of
held-out mAP@.5:.95 against latency.

    python -m perception_bench.peers peers.json --out DIR    # table.md and pareto.png again
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GRAPH_REPEATS = 300  # timed replays of the captured graph, median taken
WARMUP = 20          # eager runs before capture (cuDNN autotuning, allocator)


def graph_network_ms(module: Any, shape: Sequence[int], repeats: int = GRAPH_REPEATS) -> float:
    """Median milliseconds of one fp16 forward of ``module`` on a fixed [1, 3, H, W] input, replayed
    from a CUDA graph, timed with CUDA events: the network alone, the same way for every model."""
    import torch

    module = module.eval().to('cuda', torch.float16)
    images = torch.rand(tuple(shape), device='cuda', dtype=torch.float16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(side):
        for _ in range(WARMUP):
            module(images)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        module(images)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def pareto_front(models: Sequence[dict[str, Any]], latency: str) -> list[str]:
    """Names of the models no other model beats on both held-out mAP and ``latency`` (lower is
    better), fastest first; models without either figure take no part."""
    timed = sorted((m for m in models if m.get(latency) is not None and m.get('map50_95') is not None),
                   key=lambda m: (m[latency], -m['map50_95']))
    front, best = [], -1.0
    for model in timed:
        if model['map50_95'] > best:
            front.append(model['name'])
            best = model['map50_95']
    return front


def _cell(value: Any, digits: int = 3, unit: str = '') -> str:
    return 'not measured' if value is None else f'{value:.{digits}f}{unit}'


def markdown(peers: dict[str, Any]) -> str:
    models = peers['models']
    front = set(pareto_front(models, 'gpu_network_ms'))
    lines = [f"Same data, {peers['budget_minutes']:g} min of training each ({peers['training']}), "
             f"held-out set: {peers['heldout']}; machine: {peers['machine']}.", '',
             '| model | parameters | input | epochs | held-out mAP@.5:.95 | mAP@.5 | '
             'GPU fp16 graph, network | CPU ONNX Runtime, frame -> detections | Pareto (GPU) |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for m in sorted(models, key=lambda m: -(m.get('map50_95') or 0)):
        lines.append(f"| {m['name']} | {m['parameters'] / 1e6:.2f} M | {m['input']} | "
                     f"{m.get('epochs') or ''} | {_cell(m.get('map50_95'))} | {_cell(m.get('map50'))} | "
                     f"{_cell(m.get('gpu_network_ms'), 2, ' ms')} | "
                     f"{_cell(m.get('cpu_frame_ms'), 1, ' ms')} | {'yes' if m['name'] in front else ''} |")
    return '\n'.join(lines) + '\n'


def pareto_plot(peers: dict[str, Any], path: Path) -> Path:
    """Held-out mAP@.5:.95 against GPU and CPU latency, one panel each, the front drawn."""
    import matplotlib
    matplotlib.use('Agg')  # files only
    import matplotlib.pyplot as plt

    from perception_core.atomic import atomic_path

    panels = [('gpu_network_ms', 'GPU fp16 CUDA graph, network (ms)'),
              ('cpu_frame_ms', 'CPU ONNX Runtime, frame -> detections (ms)')]
    figure, axes = plt.subplots(1, len(panels), figsize=(11, 4.2))
    for axis, (key, label) in zip(axes, panels, strict=True):
        shown = [m for m in peers['models'] if m.get(key) is not None and m.get('map50_95') is not None]
        for m in shown:
            ours = m.get('kind') == 'ours'
            axis.scatter(m[key], m['map50_95'], s=60, marker='o' if ours else 's',
                         color='tab:blue' if ours else 'tab:orange')
            axis.annotate(m['name'], (m[key], m['map50_95']), textcoords='offset points', xytext=(6, 4),
                          fontsize=8)
        by_name = {m['name']: m for m in shown}
        front = [by_name[n] for n in pareto_front(shown, key)]
        if len(front) > 1:
            axis.plot([m[key] for m in front], [m['map50_95'] for m in front], '--', color='grey', lw=1)
        axis.set_xlabel(label)
        axis.set_ylabel('held-out mAP@.5:.95')
        axis.grid(alpha=0.3)
        if not shown:
            axis.text(0.5, 0.5, 'not measured', ha='center', va='center', transform=axis.transAxes)
    figure.suptitle(f"Same data, {peers['budget_minutes']:g} min of training each (ours: circles)")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format='png', dpi=110)
    plt.close(figure)
    return path


def render(peers_json: Path, out: Path) -> tuple[Path, Path]:
    peers = json.loads(peers_json.read_text())
    out.mkdir(parents=True, exist_ok=True)
    table = out / 'table.md'
    table.write_text(markdown(peers))
    return table, pareto_plot(peers, out / 'pareto.png')


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m perception_bench.peers',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('peers', type=Path, help='peers.json from tools/peer_table.py')
    parser.add_argument('--out', type=Path, default=None, help='default: beside peers.json')
    args = parser.parse_args(argv)
    if not args.peers.is_file():
        print(f'{args.peers}: no such file', file=sys.stderr)
        return 2
    table, plot = render(args.peers, args.out or args.peers.parent)
    print(table.read_text(), end='')
    print(f'plot: {plot}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
