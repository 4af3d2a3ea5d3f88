"""Multi-GPU scaling of ``perception-train`` from the runs ``tools/train_scaling.sh`` leaves behind.

Each run directory holds the trainer's ``history.json``. Throughput is the median of the epochs after
the first (cuDNN autotuning and worker start-up), validation excluded, as the trainer reports it;
scaling efficiency = images/s on N GPUs / (N x images/s on 1). The runs share the recipe and its
global batch, so their final mAP must agree (issue 8: within 0.02) and the efficiency must reach
0.85 on 2 GPUs and 0.75 on 4.

    python -m perception_bench.scaling out/train_scaling --out bench/results/train_ddp_h100x2.json
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from perception_core import atomic

from .stats import spread

log = logging.getLogger(__name__)
EFFICIENCY_TARGET = {2: 0.85, 4: 0.75}
MAP_AGREEMENT = 0.02
RUN_NAME = re.compile(r'^gpu(\d+)')  # gpu<N>, or gpu<N>_<variant>


def summarise_run(history: Sequence[dict[str, Any]], gpus: int) -> dict[str, Any]:
    """One training run: throughput after the first epoch, and the last validation's metrics."""
    if not history:
        raise ValueError('empty history')
    per_epoch = [round(float(r['images_per_s']), 1) for r in history]
    last = history[-1]
    return {
        'gpus': gpus,
        'epochs': len(history),
        'images_per_s': spread(per_epoch[1:] or per_epoch),
        'images_per_s_per_epoch': per_epoch,
        'elapsed_s': round(float(last['elapsed_s']), 1),
        'final': {k: round(float(last[k]), 4) for k in ('mAP', 'mAP50', 'val_loss') if k in last},
        'mAP_per_epoch': [round(float(r['mAP']), 4) for r in history if 'mAP' in r],
    }


def compare(one: dict[str, Any], many: dict[str, Any]) -> dict[str, Any]:
    """Scaling efficiency and mAP agreement of an N-GPU run against the 1-GPU run."""
    n = many['gpus']
    efficiency = many['images_per_s']['median'] / (n * one['images_per_s']['median'])
    result: dict[str, Any] = {'run': many['name'], 'gpus': n, 'speedup': round(efficiency * n, 3),
                              'scaling_efficiency': round(efficiency, 3)}
    if n in EFFICIENCY_TARGET:
        result['efficiency_target'] = EFFICIENCY_TARGET[n]
        result['efficiency_met'] = efficiency >= EFFICIENCY_TARGET[n]
    if one['epochs'] == many['epochs'] and 'mAP' in one['final'] and 'mAP' in many['final']:
        difference = abs(many['final']['mAP'] - one['final']['mAP'])
        result['mAP_difference'] = round(difference, 4)
        result['mAP_agree_within'] = MAP_AGREEMENT
        result['mAP_agree'] = difference <= MAP_AGREEMENT
    return result


def summarise(folder: Path) -> dict[str, Any]:
    """Every ``gpu<N>[_variant]`` run directory with a history, each N-GPU run against ``gpu1``."""
    runs: dict[str, dict[str, Any]] = {}
    for history_file in sorted(folder.glob('*/history.json')):
        name = history_file.parent.name
        config = yaml.safe_load((history_file.parent / 'config.yaml').read_text())
        match = RUN_NAME.match(name)
        if match is None:
            continue
        gpus = int(match.group(1))
        runs[name] = {'name': name, **summarise_run(json.loads(history_file.read_text()), gpus),
                      'batch_per_process': config['batch_size'], 'global_batch': config['batch_size'] * gpus,
                      'loader_workers_per_process': config['workers'], 'sync_bn': config['sync_bn']}
    if 'gpu1' not in runs:
        raise ValueError(f'{folder}: no gpu1/history.json, so nothing to scale against')
    scaled = [compare(runs['gpu1'], run) for run in runs.values() if run['gpus'] > 1]
    gpu_text = folder / 'gpu.txt'
    return {'machine': gpu_text.read_text().strip() if gpu_text.is_file() else None,
            'runs': runs, 'scaling': scaled}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='python -m perception_bench.scaling', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('folder', type=Path, help="tools/train_scaling.sh's OUT")
    parser.add_argument('--out', type=Path, required=True, help='JSON to write')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    report = summarise(args.folder)
    atomic.write_json(args.out, report)
    for entry in report['scaling']:
        log.info('%s: speed-up %.2f, efficiency %.3f, mAP difference %s', entry['run'],
                 entry['speedup'], entry['scaling_efficiency'], entry.get('mAP_difference'))
    log.info('written %s', args.out)


if __name__ == '__main__':
    main()
