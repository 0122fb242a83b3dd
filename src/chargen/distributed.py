"""Data-parallel training under torchrun: process group set-up and the few collective
operations the trainer needs. A single process (no WORLD_SIZE) is the world of one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .runtime import resolve_device


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This rank's rows of a global batch of size * batch_size rows."""
        return slice(self.rank * batch_size, (self.rank + 1) * batch_size)


SINGLE = World()


def join(device_name: str) -> tuple[World, torch.device]:
    """Join the torchrun process group when launched by torchrun (gloo on CPU, NCCL on GPU,
    one process per device); otherwise the world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), resolve_device(device_name)
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(world.local_rank)
        return world, torch.device("cuda", world.local_rank)
    return world, torch.device("cpu")


def leave(together: bool = False) -> None:
    """End this process's part in the group; `together` (after a run that succeeded): first
    wait for every rank, so that none tears its connections down while rank 0 still writes
    its last files and samples (a rank that left early aborted in gloo's teardown once in
    CI's test run: 'terminate called without an active exception')."""
    if dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def sum_all(values: list[float], world: World, device: torch.device) -> list[float]:
    if not world.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def max_over_ranks(value: int, world: World, device: torch.device) -> int:
    """The largest of the ranks' values, on every rank (a decision all ranks must share)."""
    if not world.enabled:
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def from_main(value: Any, world: World) -> Any:
    """Rank 0's value, on every rank."""
    if not world.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def same_everywhere(model: torch.nn.Module, world: World, device: torch.device) -> bool:
    """Whether every rank holds the same weights (compared through a checksum)."""
    if not world.enabled:
        return True
    with torch.no_grad():
        checksum = torch.stack([p.double().sum() for p in model.parameters()]).sum().view(1)
    checksum = checksum.to(device)
    lowest, highest = checksum.clone(), checksum.clone()
    dist.all_reduce(lowest, op=dist.ReduceOp.MIN)
    dist.all_reduce(highest, op=dist.ReduceOp.MAX)
    return bool(lowest == highest)


def gather_rows(state, world: World):
    """The recurrent state of every rank's rows, concatenated in rank order (dim 1 is the
    batch); None stays None."""
    if not world.enabled or state is None:
        return state
    parts = state if isinstance(state, tuple) else (state,)
    gathered = []
    for part in parts:
        pieces = [torch.empty_like(part) for _ in range(world.size)]
        dist.all_gather(pieces, part.contiguous())
        gathered.append(torch.cat(pieces, dim=1))
    return tuple(gathered) if isinstance(state, tuple) else gathered[0]
