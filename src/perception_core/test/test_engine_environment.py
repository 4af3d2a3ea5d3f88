"""What a build needs, and the one sentence when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception_core.engine.environment import has_module, missing_for


def test_a_folder_of_stubs_is_not_an_installed_module(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # tensorrt-stubs installs exactly this: a tensorrt/ folder with __init__.pyi and no code.
    (tmp_path / 'stub_only_library').mkdir()
    (tmp_path / 'stub_only_library' / '__init__.pyi').write_text('def f() -> int: ...\n')
    (tmp_path / 'real_library').mkdir()
    (tmp_path / 'real_library' / '__init__.py').write_text('')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not has_module('stub_only_library')
    assert has_module('real_library')
    assert not has_module('no_such_library_anywhere')


@pytest.mark.skipif(has_module('tensorrt'), reason='TensorRT is installed on this machine')
def test_missing_tensorrt_is_one_sentence() -> None:
    for target in ('tensorrt', 'torch_tensorrt'):
        message = missing_for(target)
        assert message is not None and message.startswith('TensorRT is not installed here')
        assert message.count('. ') == 0 and message.endswith('.') and '\n' not in message
        assert 'model.onnx' in message

