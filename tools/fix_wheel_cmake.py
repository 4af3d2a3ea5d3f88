"""Point the ROS 2 wheels' exported CMake files at this Python's include directories.

The Kilted wheels were built in a manylinux container; their exported CMake targets name that
container's Python and numpy include directories (/opt/python/cp311-cp311/...), which do not
exist here, so any ament_cmake interface package built against them fails to configure.
Run with the venv's Python; idempotent.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

BUILDER_PREFIX = re.compile(r'/opt/python/cp3\d+-cp3\d+')
PYTHON_INCLUDE = re.compile(r'/opt/python/cp3\d+-cp3\d+/include/python3\.\d+')
NUMPY_INCLUDE = re.compile(r'/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include')


def fix(share: Path) -> int:
    python_include = sysconfig.get_paths()['include']
    numpy_include = numpy.get_include()
    changed = 0
    for path in share.glob('*/cmake/*.cmake'):
        text = path.read_text()
        if not BUILDER_PREFIX.search(text):
            continue
        text = NUMPY_INCLUDE.sub(numpy_include, text)
        text = PYTHON_INCLUDE.sub(python_include, text)
        path.write_text(text)
        changed += 1
    return changed


if __name__ == '__main__':
    prefix = Path(sys.argv[1] if len(sys.argv) > 1 else sys.prefix)
    count = fix(prefix / 'share')
    sys.stderr.write(f'fix_wheel_cmake: rewrote {count} CMake files under {prefix / "share"}\n')
