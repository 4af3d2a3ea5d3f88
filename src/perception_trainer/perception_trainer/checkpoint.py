"""Checkpoints: written atomically, read with ``weights_only=True`` (plain tensors and Python
containers only, no pickled code)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from perception_core.atomic import atomic_path

LAST, BEST = 'last.pt', 'best.pt'


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message names the file."""


def save(path: str | Path, state: dict[str, Any]) -> Path:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: no such checkpoint')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f'{path}: unreadable checkpoint: {exc}') from exc
    if not isinstance(state, dict) or 'model' not in state or 'meta' not in state:
        raise CheckpointError(f'{path}: not a perception-train checkpoint (needs model and meta)')
    return state
