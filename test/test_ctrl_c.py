"""Ctrl-C in the workspace's long commands, as a terminal sends it (SIGINT to the whole process
group): one line saying so, exit status 130, no traceback, and no process left behind.
(perception-train's and perception-synth's: src/perception_trainer/test.)"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

EXIT_INTERRUPTED = 130


def interrupt_when(command: list[str], ready, timeout: float = 120) -> tuple[int, str]:
    """Start ``command`` in its own process group with Ctrl-C's default action (a background
    shell's job ignores SIGINT, and children inherit that), SIGINT the group once ``ready()``."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    try:
        deadline = time.monotonic() + timeout
        while not ready() and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[0][-3000:]
            time.sleep(0.2)
        assert ready(), f'{command[0]} did not get there in {timeout} s'
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, output


def processes_naming(path: Path) -> list[str]:
    found = subprocess.run(['pgrep', '-af', str(path)], capture_output=True, text=True, check=False)
    return [line for line in found.stdout.splitlines() if 'pgrep' not in line]


def test_ctrl_c_during_the_demos_replay_stops_the_node_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / 'demo'
    status, output = interrupt_when(['perception-demo', '--out', str(out), '--frames', '300'],
                                    (out / 'answers').exists)
    assert status == EXIT_INTERRUPTED and 'Traceback' not in output, output[-3000:]
    assert output.rstrip().endswith('perception-demo: interrupted'), output[-3000:]
    deadline = time.monotonic() + 10
    while processes_naming(out) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes_naming(out), 'the node outlived the demo'


def test_ctrl_c_while_recording_a_bag_leaves_no_bag(tmp_path: Path) -> None:
    bag = tmp_path / 'synthetic'
    status, output = interrupt_when(['perception-bag', 'record-synthetic', str(bag), '--frames', '5000'],
                                    lambda: any(tmp_path.glob('.synthetic.partial/*/*')))
    assert status == EXIT_INTERRUPTED and 'Traceback' not in output, output[-3000:]
    assert 'perception-bag record-synthetic: interrupted' in output
    assert not bag.exists() and not list(tmp_path.iterdir()), 'a bag appears only when complete'
