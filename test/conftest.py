"""Shared fixtures for workspace-level tests: the environment for ROS processes."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from perception.middleware import middleware_environment

WORKSPACE = Path(__file__).resolve().parents[1]
_domains = itertools.count()


def ros_process_env(domain_id: int, **overrides: str) -> dict[str, str]:
    """Environment for a ROS 2 subprocess: middleware settings, own domain, this host only."""
    env = dict(os.environ)
    env.update(middleware_environment(WORKSPACE / 'config', localhost_only=True))
    env['ROS_DOMAIN_ID'] = str(domain_id)
    env['PYTHONUNBUFFERED'] = '1'
    env.update(overrides)
    return env


@pytest.fixture
def ros_domain_id() -> int:
    """A domain of its own per test, so tests running side by side never hear each other."""
    return 1 + (os.getpid() * 7 + next(_domains)) % 100


@pytest.fixture
def ros_env(ros_domain_id: int) -> dict[str, str]:
    return ros_process_env(ros_domain_id)
