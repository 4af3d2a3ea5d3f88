"""The deployment's ``resources.*`` keys applied to this process: CPU affinity, the memory guard,
and the Jetson power mode (read and compared; changing it needs root and is the robot's call)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import psutil

from .backends.gpu import is_jetson

# Prefer this process over the robot's other processes if the kernel must kill one for memory.
OOM_SCORE_ADJ = 500


def _split(cores: list[int]) -> tuple[list[int], list[int]]:
    available = set(range(os.cpu_count() or 1))
    return sorted(set(cores) & available), sorted(set(cores) - available)


def usable_cores(cores: list[int]) -> tuple[list[int], list[int]]:
    """What :func:`apply_cpu_affinity` would return, without pinning anything."""
    usable, dropped = _split(cores)
    return (usable or sorted(os.sched_getaffinity(0))), dropped


def apply_cpu_affinity(cores: list[int]) -> tuple[list[int], list[int]]:
    """Pin every thread of this process (threads started later inherit it) to ``cores``.

    Returns (cores applied, cores dropped because this machine lacks them). An empty list, or a
    list of only missing cores, leaves the affinity as it is.
    """
    usable, dropped = _split(cores)
    if not usable:
        return sorted(os.sched_getaffinity(0)), dropped
    for tid in os.listdir('/proc/self/task'):
        try:
            os.sched_setaffinity(int(tid), usable)
        except (ProcessLookupError, PermissionError):
            continue  # a thread that ended meanwhile, or one we may not move
    return usable, dropped


def prefer_as_oom_victim() -> bool:
    """Make the kernel's OOM killer take this node before other robot processes (best effort)."""
    try:
        Path('/proc/self/oom_score_adj').write_text(str(OOM_SCORE_ADJ))
    except OSError:
        return False
    return True


def rss_bytes() -> int:
    return int(psutil.Process().memory_info().rss)


def read_power_mode() -> str | None:
    """The active Jetson power mode name from ``nvpmodel -q``; None off a Jetson or without nvpmodel."""
    if not is_jetson() or shutil.which('nvpmodel') is None:
        return None
    try:
        output = subprocess.run(['nvpmodel', '-q'], capture_output=True, text=True, timeout=5,
                                check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_power_mode(output)


def parse_power_mode(output: str) -> str | None:
    """``NV Power Mode: MAXN`` -> ``MAXN``."""
    match = re.search(r'NV Power Mode:\s*(\S+)', output)
    return match.group(1) if match else None
