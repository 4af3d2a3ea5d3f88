"""The training network as ``compile`` has training run it: eager, or through torch.compile.

On a GPU a small model's step is bound by launching its kernels from Python (bench/README "Where a
training step's time goes"); replaying forward and backward as CUDA graphs removes that cost.
``cudagraphs`` does so without generating kernels (no triton needed); ``reduce-overhead`` also
fuses them with inductor. On the CPU inductor gave no gain (bench/README), and CUDA graphs do not
apply there.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import torch

from .config import ConfigError, TrainConfig

log = logging.getLogger(__name__)

# torch.compile's arguments for each value of the compile key
COMPILE_OPTIONS: dict[str, dict[str, Any]] = {
    'cudagraphs': {'backend': 'cudagraphs'},
    'default': {'mode': 'default'},
    'reduce-overhead': {'mode': 'reduce-overhead'},
    'max-autotune': {'mode': 'max-autotune'},
}
REPLAYS_CUDA_GRAPHS = frozenset({'cudagraphs', 'reduce-overhead'})


def compiled_network(net: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
    """``net`` as training runs it. Parameters and checkpoints stay the eager module's."""
    if cfg.compile == 'none':
        return net
    options = COMPILE_OPTIONS[cfg.compile]
    if device.type == 'cuda' and 'mode' in options and importlib.util.find_spec('triton') is None:
        raise ConfigError(f'compile {cfg.compile}: inductor needs triton on CUDA, and this environment '
                          f'has none (pip install triton; or compile cudagraphs, which needs none)')
    log.info('network compiled with torch.compile %s: the first steps compile it',
             ', '.join(f'{k} {v}' for k, v in options.items()))
    return torch.compile(net, **options)  # type: ignore[return-value]


def begin_step(cfg: TrainConfig) -> None:
    """Before each training step: the last step's CUDA-graph outputs may now be overwritten."""
    if cfg.compile in REPLAYS_CUDA_GRAPHS:
        torch.compiler.cudagraph_mark_step_begin()
