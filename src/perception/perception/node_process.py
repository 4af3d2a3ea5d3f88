"""The planned node as a plain child process: the tooling that runs the node where ``ros2 launch``
is unavailable (no ``launch_ros`` here: the demo, the tests, the benchmarks). Robots use the
launch file, which turns the same :class:`LaunchPlan` into a launch_ros ``Node``.

Runs :meth:`LaunchPlan.command` with the plan's environment (what ``ros2 launch`` would do for
the node alone), logs to a file, and stops it with SIGINT as launch does, so the node shuts down
cleanly and writes its profile and monitoring files. Once the node has exited, the plan's temporary
params folder is removed (``LaunchPlan.remove_params``), as the launch file does.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from perception.launch_plan import LaunchPlan, node_executable

log = logging.getLogger(__name__)

STOP_TIMEOUT = 15.0  # seconds the node gets to shut down after SIGINT before it is killed


class NodeExited(RuntimeError):
    """The node ended while it was needed; the message holds the end of its log."""


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return '\n'.join(path.read_text(errors='replace').splitlines()[-lines:])
    except OSError:
        return '(no log)'


@contextmanager
def running_node(plan: LaunchPlan, log_path: str | Path, env: dict[str, str] | None = None
                 ) -> Iterator[subprocess.Popen]:
    """Start the node, yield its process, stop it on exit; ``env`` adds to the plan's environment."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, **plan.env, **(env or {})}
    command = plan.command(node_executable())
    log.info('starting %s (log %s)', ' '.join(command), log_path)
    with log_path.open('w') as out:
        process = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
        if process.poll() is not None:
            raise NodeExited(f'the node exited with code {process.returncode}:\n{log_tail(log_path)}')
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning('the node did not stop within %g s of SIGINT; killing it', STOP_TIMEOUT)
                process.kill()
                process.wait()
        plan.remove_params()
