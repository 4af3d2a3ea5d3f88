"""``python -m perception_bench.run`` (``make bench``): every speed figure of the workspace on this
machine, in one run, into ``bench/results/<machine>.json`` and ``<machine>.md``.

Sections: backends (latency and throughput, network and whole frame; GPU variants checked against
ONNX Runtime), preprocessing (CPU vs GPU), node (end to end through the node process), training
(perception-train images/s), limit (the GPU's measured ceilings, the model's floor, measured/floor,
a profile). What this machine cannot run is listed with the reason. The JSON is rewritten after
every section, so a crash keeps what was measured.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from perception_bench.timing import machine_facts
from perception_core.atomic import write_json, write_text
from perception_core.backends.gpu import torch_cuda_available
from perception_core.bundle import Bundle, load_bundle

from . import backends, cameras, cuda_model, family, limit, node, preprocessing, report, training
from .backends import Effort

log = logging.getLogger('bench')
SECTIONS = ('backends', 'preprocessing', 'limit', 'node', 'cameras', 'family', 'training')
# the family members `make bench` times (perception-family-bench times every one)
FAMILY = 'n:tiny,m:resnet_slim,n:mobilenet_v3,n:resnet18'  # the CPU recipe, the shipped model, two more
QUICK = Effort(repeats=2, gpu_calls=20, cpu_calls=4, warmup=2, agreement_frames=4)


def machine_name() -> str:
    """A file name for this machine: the GPU's name, else the CPU model and core count."""
    facts = machine_facts()
    name = facts.get('gpu') or f'cpu-{facts.get("cpu", "unknown")}-{len(os.sched_getaffinity(0))}cores'
    return re.sub(r'[^a-z0-9]+', '-', str(name).lower()).strip('-')[:60]


def machine() -> dict[str, Any]:
    import numpy
    import onnxruntime
    import torch

    return {
        **machine_facts(),
        'usable_cpus': len(os.sched_getaffinity(0)),
        'kernel': platform.release(),
        'load_average_at_start': [round(x, 2) for x in os.getloadavg()],
        'torch': torch.__version__,
        'onnxruntime': onnxruntime.__version__,
        'numpy': numpy.__version__,
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
    }


def max_batch_size(config: Path) -> int:
    from perception_core.deployment import load_config

    return int(load_config(config)['performance.max_batch_size'])


def limit_section(bundle: Bundle, measured: dict[str, Any], effort: Effort) -> dict[str, Any]:
    work = limit.model_work(bundle)
    if not torch_cuda_available():
        return {'model': work, 'skipped': 'no CUDA device here: ceilings, floor and profile run on the GPU'}
    import torch

    from perception_core.backends import BackendOptions
    from perception_core.backends.torch_cuda import TorchCudaBackend

    ceiling = limit.ceilings()
    floor = limit.floors(work, ceiling, (640, 480), 4 + len(bundle.classes))
    fp16 = measured.get('variants', {}).get('fp16_graph', {})
    ratios = {}
    for name, figure, floor_us in (
        ('network_batch1', fp16.get('network', {}).get('1'), floor['network']['floor_us']),
        ('frame_640x480', fp16.get('frame_640x480', {}).get('backend'), floor['frame_640x480']['floor_us']),
    ):
        if figure is not None:
            measured_us = figure['p50_ms']['median'] * 1e3
            ratios[name] = {
                'measured_us': round(measured_us, 1),
                'floor_us': floor_us,
                'measured_over_floor': round(measured_us / floor_us, 1),
            }
    frames = backends.camera_frames(bundle, 8, 640, 480)
    profiles = {}
    for graphs in (False, True):
        backend = TorchCudaBackend(
            bundle.torchscript_path, bundle, BackendOptions(precision='fp16'), graphs=graphs
        )
        try:
            profiles['fp16_graph' if graphs else 'fp16_eager'] = limit.profile(
                lambda f, b=backend: b.infer_image(f.pixels, f.rgb_channels), frames
            )
        finally:
            backend.close()
    kernels = max(1, round(profiles['fp16_eager']['kernels_per_frame']))
    chain_us = limit.kernel_chain_us(torch, kernels)
    return {
        'model': work,
        'ceilings': ceiling,
        'floor': floor,
        'measured_over_floor': ratios,
        'profile': profiles,
        'kernel_chain': {
            'kernels': kernels,
            'us_per_kernel': round(chain_us, 3),
            'chain_us': round(chain_us * kernels, 1),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m perception_bench.run',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--bundle', type=Path, default=Path('models/detector'))
    parser.add_argument('--config', type=Path, default=Path('config/jetson_deployment.yaml'))
    parser.add_argument('--recipe', type=Path, default=Path('config/train_default.yaml'))
    parser.add_argument('--out-dir', type=Path, default=Path('bench/results'))
    parser.add_argument('--machine', default=None, help='result file name (default: from the GPU or CPU)')
    parser.add_argument('--sections', default=','.join(SECTIONS), help=f'comma-separated, of {SECTIONS}')
    parser.add_argument('--repeats', type=int, default=Effort.repeats, help='runs per figure')
    parser.add_argument('--node-seconds', type=float, default=4.0, help='length of each node bench phase')
    parser.add_argument('--node-repeats', type=int, default=3)
    parser.add_argument('--camera-counts', default='1,2,4', help='cameras section: camera counts')
    parser.add_argument('--camera-rate', type=float, default=30.0, help='cameras section: each camera\'s Hz')
    parser.add_argument('--camera-seconds', type=float, default=6.0, help='cameras section: seconds each')
    parser.add_argument('--camera-trigger', default='free,together',
                        help='cameras section: camera timing (perception-cameras-bench --trigger)')
    parser.add_argument('--family', default=FAMILY, help='family section: SIZE:BACKBONE[:WxH],...')
    parser.add_argument('--quick', action='store_true', help='few calls per run (tests); figures are rough')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    chosen = [s.strip() for s in args.sections.split(',') if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f'--sections: unknown {unknown}; choose from {SECTIONS}')
    effort = QUICK if args.quick else Effort(repeats=args.repeats)
    try:
        members = [family.Member.parse(t) for t in args.family.split(',') if t.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    node_repeats = 1 if args.quick else args.node_repeats
    bundle = load_bundle(args.bundle)
    name = args.machine or machine_name()
    json_path, md_path = args.out_dir / f'{name}.json', args.out_dir / f'{name}.md'
    result: dict[str, Any] = {
        'machine': machine(),
        'command': ' '.join(['python -m perception_bench.run', *sys.argv[1:]]),
        'effort': asdict(effort) | {'node_repeats': node_repeats, 'node_seconds': args.node_seconds},
        'bundle': str(args.bundle),
        'section_seconds': {},
    }
    batch_sizes = sorted({1, max_batch_size(args.config)})
    scratch = tempfile.TemporaryDirectory(prefix='bench-')
    gpu_bundle = bundle
    if torch_cuda_available():
        gpu_bundle, result['cuda_model'] = cuda_model.runnable_bundle(
            bundle, Path(scratch.name) / 'gpu_bundle'
        )
    run: dict[str, Callable[[], dict[str, Any]]] = {
        'backends': lambda: backends.measure(bundle, batch_sizes, effort, gpu_bundle=gpu_bundle),
        'preprocessing': lambda: preprocessing.measure(bundle, effort),
        'limit': lambda: limit_section(gpu_bundle, result.get('backends', {}), effort),
        'node': lambda: node.measure(
            args.config.resolve(),
            gpu_bundle.directory.resolve(),
            node_repeats,
            args.node_seconds,
        ),
        'cameras': lambda: cameras.measure(
            args.config.resolve(), node.node_backends(gpu_bundle.directory.resolve())[0][1],
            rate=args.camera_rate, seconds=2.0 if args.quick else args.camera_seconds,
            cameras='1,2' if args.quick else args.camera_counts, progress=False,
            triggers=[t for t in args.camera_trigger.split(',') if t]),
        'family': lambda: family.measure(members, Path(scratch.name) / 'family', effort),
        'training': lambda: training.measure(args.recipe.resolve(), quick=args.quick),
    }
    for section in (s for s in SECTIONS if s in chosen):
        log.info('section %s', section)
        start = time.monotonic()
        try:
            result[section] = run[section]()
        except Exception as exc:  # one broken section must not lose the others
            log.exception('section %s failed', section)
            result[section] = {
                'error': f'{type(exc).__name__}: {exc}',
                'traceback': traceback.format_exc()[-3000:],
            }
        result['section_seconds'][section] = round(time.monotonic() - start, 1)
        write_json(json_path, result)
    scratch.cleanup()
    result['machine']['load_average_at_end'] = [round(x, 2) for x in os.getloadavg()]
    write_json(json_path, result)
    text = report.markdown(result)
    write_text(md_path, text)
    print(text)
    print(f'wrote {json_path} and {md_path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
