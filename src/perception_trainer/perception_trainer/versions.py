"""Library versions recorded in checkpoints and model.json (what produced this model)."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ('torch', 'onnx', 'onnxruntime', 'albumentations', 'numpy', 'opencv-python-headless')


def versions() -> dict[str, str]:
    found = {'python': platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
