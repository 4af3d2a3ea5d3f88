"""How the trainer derives one random seed from several keys (run seed, epoch, sample index, ...):
every per-sample and per-batch draw goes through here, so the same keys give the same seed."""

from __future__ import annotations

import numpy as np


def derived(*keys: int) -> int:
    """A 32-bit seed from ``keys`` (NumPy's SeedSequence: nearby keys give unrelated seeds)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])
