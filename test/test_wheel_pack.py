"""tools/wheel_pack.py: the device's wheels travel stored + xz-compressed and come back as wheels
pip installs, byte for byte the same files inside; anything but top-level wheels is refused."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / 'tools' / 'wheel_pack.py'


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], check=False, capture_output=True,
                          text=True, timeout=120)


def make_wheel(path: Path) -> dict[str, bytes]:
    files = {'demo/__init__.py': b'VALUE = 1\n' * 200,
             'demo-1.0.dist-info/METADATA': b'Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n',
             'demo-1.0.dist-info/WHEEL': b'Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n'
                                         b'Tag: py3-none-any\n',
             'demo-1.0.dist-info/RECORD': b''}
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return files


def test_packed_wheels_unpack_with_the_same_contents_and_install(tmp_path: Path) -> None:
    wheels = tmp_path / 'wheels'
    wheels.mkdir()
    files = make_wheel(wheels / 'demo-1.0-py3-none-any.whl')
    archive = tmp_path / 'packed' / 'wheels.tar.xz'
    assert run('pack', wheels, archive).returncode == 0
    out = tmp_path / 'out'
    assert run('unpack', archive, out).returncode == 0
    with zipfile.ZipFile(out / 'demo-1.0-py3-none-any.whl') as wheel:
        assert {i.filename: wheel.read(i) for i in wheel.infolist()} == files
        assert {i.compress_type for i in wheel.infolist()} == {zipfile.ZIP_STORED}
    target = tmp_path / 'site'
    installed = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps',
                                '--target', str(target), str(out / 'demo-1.0-py3-none-any.whl')],
                               check=False, capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    assert (target / 'demo' / '__init__.py').read_bytes() == files['demo/__init__.py']


def test_an_archive_with_anything_but_top_level_wheels_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / 'bad.tar.xz'
    with tarfile.open(archive, 'w:xz') as tar:
        info = tarfile.TarInfo('../escape.whl')
        info.size = 1
        tar.addfile(info, io.BytesIO(b'x'))
    result = run('unpack', archive, tmp_path / 'out')
    assert result.returncode != 0 and "'../escape.whl' is not a wheel at the top level" in result.stderr
    assert not (tmp_path / 'escape.whl').exists()


@pytest.mark.parametrize('verb, error', [('pack', 'no wheels to pack'), ('unpack', 'no such archive')])
def test_nothing_to_pack_or_unpack_names_the_path(tmp_path: Path, verb: str, error: str) -> None:
    result = run(verb, tmp_path / 'missing', tmp_path / 'x.tar.xz')
    assert result.returncode != 0 and error in result.stderr and 'missing' in result.stderr
