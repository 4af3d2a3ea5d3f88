"""Ctrl-C at random moments of real runs, many times: what the Ctrl-C tests do once.

``--command train``: each run trains on 12 rendered frames with 2 loader processes and gets SIGINT
to its process group 0-1.5 s after its first epoch is recorded; ``--command ranks`` does the same
with ``--nproc-per-node 2`` (two ranks, one loader process each), ``--command torchrun`` with plain
``torchrun --nproc-per-node 2`` around it. ``--command synth``: each run
renders 400 frames with 2 spawned processes and gets SIGINT 0-2.5 s after it starts (the workers
import for about a second). A run is clean when it exits 130 with no traceback; one still going
60 s later lost the Ctrl-C; one SIGINT ended by its default action got it before the interpreter
had installed its handler (as any Python program would). Numbers go to the trainer README.

    tools/in_env.sh python tools/ctrl_c_stress.py --runs 100 --out /tmp/ctrl_c [--command synth]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from perception_trainer.generate import generate_dataset
from perception_trainer.readers import COCO_FILE

TRAIN = ('--epochs', '200', '--workers', '2', '--input-height', '96', '--input-width', '128',
         '--batch-size', '4', '--device', 'cpu')
SYNTH = ('--num-images', '400', '--seed', '1', '--workers', '2')
RANKS = ('--workers', '1', '--nproc-per-node', '2')
LATEST_CTRL_C_S = {'train': 1.5, 'ranks': 1.5, 'torchrun': 1.5, 'synth': 2.5}


def one_run(command: str, data: Path, out: Path, delay_s: float) -> str:
    """-> 'clean', 'traceback', 'said more than once', 'exit N', 'killed at start-up' or 'lost'
    (still going after the Ctrl-C)."""
    training = ['perception_trainer.train', '--train-data', str(data), '--val-data', str(data), '--out',
                str(out), *TRAIN]
    args = {'train': training, 'ranks': [*training, *RANKS],
            'torchrun': ['torch.distributed.run', '--standalone', '--nproc-per-node', '2', '-m', *training,
                         '--workers', '1'],
            'synth': ['perception_trainer.generate', '--out', str(out), *SYNTH]}[command]
    process = subprocess.Popen(
        [sys.executable, '-m', *args],
        env={**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': '2'}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
        # as a terminal would: under a background shell job SIGINT is ignored, and children inherit it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    while command != 'synth' and not (out / 'history.json').exists() and process.poll() is None:
        time.sleep(0.05)
    time.sleep(delay_s)
    os.killpg(process.pid, signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return 'lost'
    if process.returncode == -signal.SIGINT:  # no handler yet: Python itself was starting
        return 'killed at start-up'
    if process.returncode != 130:
        return f'exit {process.returncode}'
    if 'Traceback' in output:
        out.mkdir(parents=True, exist_ok=True)
        (out / 'output.log').write_text(output)
        return 'traceback'
    if output.count(': interrupted') > 1:
        return 'said more than once'
    return 'clean'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--command', choices=sorted(LATEST_CTRL_C_S), default='train')
    parser.add_argument('--runs', type=int, default=100)
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--seed', type=int, default=0, help='of the Ctrl-C delays')
    args = parser.parse_args()
    data = args.out / 'set'
    if args.command != 'synth' and not (data / COCO_FILE).exists():
        generate_dataset(data, 12, seed=5, workers=1, progress=False)
    delays = random.Random(args.seed)
    outcomes = collections.Counter()
    for run in range(args.runs):
        outcome = one_run(args.command, data, args.out / f'run{run}',
                          delays.uniform(0.0, LATEST_CTRL_C_S[args.command]))
        outcomes[outcome] += 1
        print(f'run {run + 1}/{args.runs}: {outcome}', flush=True)
    (args.out / 'outcomes.json').write_text(json.dumps(dict(outcomes), indent=1) + '\n')
    print(dict(outcomes))


if __name__ == '__main__':
    main()
