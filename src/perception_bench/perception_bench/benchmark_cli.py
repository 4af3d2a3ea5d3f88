"""``perception-benchmark``: latency and throughput of one backend per batch size, on real frames
through the node's preprocessing. Errors end as the engine builder's commands end theirs: one line
on stderr and its exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from perception_core.atomic import write_json
from perception_core.backends import BackendOptions
from perception_core.backends.select import model_file
from perception_core.bundle import load_bundle
from perception_core.engine.build import open_exactly
from perception_core.engine.frames import scene_frames
from perception_core.interrupt import on_ctrl_c
from perception_engine_builder.cli import BACKENDS, run_command

from .timing import ITERATIONS, WARMUP, benchmark


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'batch sizes must look like 1,8, got {text!r}') from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f'batch sizes must be positive, got {text!r}')
    return sizes


@on_ctrl_c('perception-benchmark')
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='perception-benchmark',
        description='Latency p50/p90/p99 and throughput of one backend per batch size, after warm-up, '
                    'with synchronised timers, on real frames; writes JSON.')
    parser.add_argument('--bundle', type=Path, required=True, help='model bundle directory')
    parser.add_argument('--backend', choices=BACKENDS, required=True)
    parser.add_argument('--model', type=Path, help='the backend\'s file (default: the bundle\'s)')
    parser.add_argument('--precision', choices=('fp32', 'fp16', 'int8'), default='fp32')
    parser.add_argument('--batch-sizes', type=_batch_sizes, default=[1, 8],
                        help='comma-separated (default 1,8: model.batch_size and performance.max_batch_size)')
    parser.add_argument('--warmup', type=int, default=WARMUP)
    parser.add_argument('--iterations', type=int, default=ITERATIONS)
    parser.add_argument('--frames', type=int, default=16, help='distinct synthetic frames to cycle through')
    parser.add_argument('--out', type=Path, help='write the JSON report here (default: stdout only)')
    args = parser.parse_args(argv)

    def body() -> int:
        bundle = load_bundle(args.bundle)
        path = model_file(args.backend, args.model or bundle.directory, bundle)
        backend = open_exactly(args.backend, path, bundle, BackendOptions(precision=args.precision))
        try:
            report = benchmark(backend, bundle, scene_frames(bundle, args.frames), args.batch_sizes,
                               warmup=args.warmup, iterations=args.iterations, progress=sys.stderr.isatty())
        finally:
            backend.close()
        if args.out:
            write_json(args.out, report)
        print(f'{report["description"]}')
        print(f'{"batch":>5} {"p50 ms":>9} {"p90 ms":>9} {"p99 ms":>9} {"frames/s":>10}')
        for row in report['results']:
            if 'error' in row:
                print(f'{row["batch_size"]:>5} error: {row["error"]}')
                continue
            lat = row['latency_ms']
            print(f'{row["batch_size"]:>5} {lat["p50"]:>9.3f} {lat["p90"]:>9.3f} {lat["p99"]:>9.3f} '
                  f'{row["throughput_fps"]:>10.1f}')
        return 0
    return run_command(parser.prog, body)
