"""Wheels for the GPU device, made small enough to travel: the device tool carries at most 64 MiB
with the tree, and wheels are deflate-zipped, which xz cannot shrink further. Re-zipped stored
(uncompressed) and xz-compressed together, the ROS closure goes from ~58 MB to ~17 MB.

    python tools/wheel_pack.py pack .whl .whl_packed/wheels.tar.xz     # here (tools/device_wheels.sh)
    python tools/wheel_pack.py unpack .whl_packed/wheels.tar.xz .whl   # there (tools/device_setup.sh)

Standard library only: the device's Python unpacks it before anything is installed.
"""

from __future__ import annotations

import io
import sys
import tarfile
import zipfile
from pathlib import Path


def stored(wheel: Path) -> bytes:
    """The wheel re-written uncompressed (same members, same order): pip installs it as it is."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(buffer, 'w', zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = source.read(info)
            info.compress_type = zipfile.ZIP_STORED
            target.writestr(info, data)
    return buffer.getvalue()


def pack(source: Path, archive: Path) -> None:
    wheels = sorted(source.glob('*.whl'))
    if not wheels:
        sys.exit(f'{source}: no wheels to pack (run tools/device_wheels.sh)')
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + '.partial')
    with tarfile.open(partial, 'w:xz', preset=9) as tar:
        for wheel in wheels:
            data = stored(wheel)
            info = tarfile.TarInfo(wheel.name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    partial.replace(archive)  # a crash leaves no half archive under the carried name
    print(f'{archive}: {len(wheels)} wheels, {archive.stat().st_size / 1e6:.1f} MB')


def unpack(archive: Path, target: Path) -> None:
    if not archive.is_file():
        sys.exit(f'{archive}: no such archive (carry it: run carry=["{archive.parent}"])')
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, 'r:xz') as tar:
        for member in tar.getmembers():
            if not member.isfile() or '/' in member.name or not member.name.endswith('.whl'):
                sys.exit(f'{archive}: {member.name!r} is not a wheel at the top level')
            extracted = tar.extractfile(member)
            assert extracted is not None  # a regular file, checked above
            (target / member.name).write_bytes(extracted.read())
    print(f'{target}: {len(list(target.glob("*.whl")))} wheels from {archive}')


if __name__ == '__main__':
    if len(sys.argv) != 4 or sys.argv[1] not in ('pack', 'unpack'):
        sys.exit(__doc__)
    (pack if sys.argv[1] == 'pack' else unpack)(Path(sys.argv[2]), Path(sys.argv[3]))
