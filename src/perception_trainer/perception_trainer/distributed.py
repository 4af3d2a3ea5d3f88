"""One training process among ``torchrun``'s: rank, device, and the few collectives training needs.

Without torchrun (no WORLD_SIZE in the environment) everything degrades to a single process and
the collectives are no-ops. NCCL carries CUDA runs, gloo CPU runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Process:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def is_rank() -> bool:
    """Started as one of torchrun's processes (or perception-train --nproc-per-node's, the same
    agent), which set WORLD_SIZE in each one's environment."""
    return 'WORLD_SIZE' in os.environ


def start(device_kind: str) -> Process:
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world == 1:
        return Process()
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if device_kind == 'cuda':
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend='nccl' if device_kind == 'cuda' else 'gloo')
    return Process(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank)


def stop(process: Process) -> None:
    if process.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean(process: Process, values: torch.Tensor) -> torch.Tensor:
    """Element-wise mean over processes."""
    if process.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= process.world
    return values


def total(process: Process, values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over processes."""
    if process.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def gather(process: Process, obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order."""
    if not process.distributed:
        return [obj]
    out: list[Any] = [None] * process.world
    dist.all_gather_object(out, obj)
    return out


def barrier(process: Process) -> None:
    if process.distributed:
        dist.barrier()
