"""Data-parallel training with DistributedDataParallel under ``torchrun``, one process per GPU (or CPU worker), as in
``torchrun --nproc_per_node=4 -m going_modular.train``: each process trains a copy of the model on its own shard of
the data; DDP averages the gradients in ``backward()``; ``engine`` sums the metrics. A plain run uses none of it."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar, Union

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Subset

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a ``torchrun`` job."""
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (which sets ``WORLD_SIZE``)."""
    return "WORLD_SIZE" in os.environ


def init_from_env(device: Union[str, torch.device, None] = None) -> Optional[DistributedContext]:
    """Join ``torchrun``'s process group (NCCL on GPUs, gloo on CPUs); None in a plain run. ``device`` ("cpu" or
    "cuda", default CUDA when available): on CUDA each process takes GPU ``LOCAL_RANK`` (RuntimeError if none)."""
    if not launched_by_torchrun():
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device_type = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"Process with LOCAL_RANK {local_rank} has no GPU: this machine has {torch.cuda.device_count()}. "
                f"Start at most that many processes per node (torchrun --nproc_per_node).")
        torch.cuda.set_device(local_rank)
        run_device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        run_device, backend = torch.device(device_type), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistributedContext(dist.get_rank(), local_rank, dist.get_world_size(), run_device, backend)


def is_main_process() -> bool:
    """True in a plain run and on rank 0 of a distributed one: the process that prints and writes files."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def shard_dataloaders(train_dataloader: DataLoader, test_dataloader: DataLoader, context: DistributedContext,
                      seed: int) -> tuple[DataLoader, DataLoader]:
    """Both dataloaders reading only this process's share, batch size per process. Training: each epoch one shuffle
    (seeded by ``seed`` and the epoch) cut into equal shards, repeating up to ``world_size - 1`` images."""
    train_sampler = DistributedSampler(train_dataloader.dataset, num_replicas=context.world_size, rank=context.rank,
                                       shuffle=True, seed=seed)
    # Each shard's last, incomplete batch is dropped (when a full one remains): with many processes it is
    # often a batch of one or two images whose gradient would weigh as much as a full batch's.
    drop_last = len(train_sampler) >= train_dataloader.batch_size
    return (_with_data(train_dataloader, train_dataloader.dataset, train_sampler, drop_last),
            shard_eval_dataloader(test_dataloader, context))


def shard_eval_dataloader(dataloader: DataLoader, context: DistributedContext) -> DataLoader:
    """Every ``world_size``-th item from this rank, no repeats: summed metrics are exactly the whole set's."""
    shard = Subset(dataloader.dataset, range(context.rank, len(dataloader.dataset), context.world_size))
    return _with_data(dataloader, shard, None, drop_last=False)


def _with_data(dataloader: DataLoader, dataset, sampler: Optional[DistributedSampler], drop_last: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=dataloader.batch_size, sampler=sampler, shuffle=False, drop_last=drop_last,
                      num_workers=dataloader.num_workers, pin_memory=dataloader.pin_memory,
                      collate_fn=dataloader.collate_fn)


def cleanup() -> None:
    """Leave the process group (a no-op in a plain run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def gather_objects(value: object) -> list:
    """Every process's ``value`` in rank order, in every process (``[value]`` in a plain run)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    values: list = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def from_rank_zero(compute: Callable[[], T], context: Optional[DistributedContext]) -> T:
    """``compute()`` run once, by rank 0 under torchrun (a download, say), its result or error sent to every process."""
    if context is None:
        return compute()
    outcome: list = [None]
    if context.rank == 0:
        try:
            outcome[0] = compute()
        except Exception as error:  # every process must stop with rank 0's error, not wait for it forever
            outcome[0] = error
    dist.broadcast_object_list(outcome, src=0)
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]
