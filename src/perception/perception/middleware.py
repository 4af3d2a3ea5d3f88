"""Middleware settings that carry camera-sized images between processes.

Fast DDS's built-in shared-memory segment is too small for 640x480 to 1920x1080 frames, and
their UDP fragments are lost under best-effort QoS: measured here, 0 of 150 frames at 30 Hz
arrived without the profile, 150 of 150 with it. The profile (config/fastdds_large_frames.xml)
gives shared memory a 64 MiB segment and keeps UDP for other hosts. env.sh, the launch file and
the tests all take their settings from ``middleware_environment`` so they cannot drift apart.
"""

from __future__ import annotations

import os
from pathlib import Path

PROFILE_FILE = 'fastdds_large_frames.xml'
RMW = 'rmw_fastrtps_cpp'


def profile_path(config_dir: str | Path | None = None) -> Path:
    """The installed profile, or the one in ``config_dir`` (e.g. the source tree's config/)."""
    if config_dir is None:
        from ament_index_python.packages import get_package_share_directory
        config_dir = Path(get_package_share_directory('perception')) / 'config'
    return Path(config_dir) / PROFILE_FILE


def middleware_environment(config_dir: str | Path | None = None, distro: str | None = None,
                           localhost_only: bool = False) -> dict[str, str]:
    """Environment variables for a process that sends or receives camera frames.

    ``localhost_only`` keeps discovery and traffic on this host (demo, tests).
    """
    path = str(profile_path(config_dir))
    distro = distro if distro is not None else os.environ.get('ROS_DISTRO', '')
    env = {'RMW_IMPLEMENTATION': os.environ.get('RMW_IMPLEMENTATION', RMW),
           'FASTDDS_DEFAULT_PROFILES_FILE': path}
    if distro in ('humble', 'iron'):
        # Fast DDS 2.x reads only the older variable name; 3.x warns that it is deprecated.
        env['FASTRTPS_DEFAULT_PROFILES_FILE'] = path
    if localhost_only:
        env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'  # Jazzy and later
        env['ROS_LOCALHOST_ONLY'] = '1'  # Humble; later distros ignore it when the range is set
    return env


def main() -> None:
    """Print ``export`` lines for a shell (used by env.sh)."""
    import argparse
    import shlex

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('--config-dir', help='folder holding ' + PROFILE_FILE)
    args = parser.parse_args()
    for key, value in middleware_environment(args.config_dir).items():
        print(f'export {key}={shlex.quote(value)}')


if __name__ == '__main__':
    main()
