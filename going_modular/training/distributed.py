"""Data-parallel training across processes with DistributedDataParallel, started by ``torchrun``.

    torchrun --nproc_per_node=4 -m going_modular.train --model vit_s_16 --epochs 100

``torchrun`` starts one process per GPU (or per CPU worker) and tells each its ``RANK``, ``LOCAL_RANK``
and ``WORLD_SIZE`` through the environment. Every process holds a copy of the model and trains on its
own shard of each batch; DDP averages the gradients during ``backward()``, so after each step all copies
are equal. This module holds the few pieces that differ from a single process:

- ``init_from_env`` joins the process group (NCCL on GPUs, gloo on CPUs) and picks this process's device;
- ``shard_dataloaders`` gives each process its part of the data: a ``DistributedSampler`` for training
  (a new shuffle every epoch, the same on every rank) and an exact, unpadded split for testing
  (``shard_eval_dataloader``, also used for validation), so that the metrics count every image once;
- ``all_reduce_sums`` adds the per-process loss, correct and seen counts, so every rank reports the
  metrics of the whole dataset; ``is_main_process`` lets only rank 0 print, show progress and write files;
- ``gather_objects`` collects one value from every process (each one's random number generators, for a
  checkpoint).

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) none of this is used and a script runs as
one ordinary process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Subset


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
    """Join the process group that ``torchrun`` set up, or return None outside ``torchrun``.

    Args:
        device: "cpu" or "cuda" to choose the device type; by default CUDA when available. On CUDA each
            process takes the GPU numbered by its ``LOCAL_RANK``.

    Returns:
        This process's ``DistributedContext``, or None when ``WORLD_SIZE`` is not set (a plain run).

    Raises:
        RuntimeError: CUDA was asked for but this process's ``LOCAL_RANK`` has no GPU.
    """
    if not launched_by_torchrun():
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device_type = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"Process with LOCAL_RANK {local_rank} has no GPU: this machine has {torch.cuda.device_count()}. "
                f"Start at most that many processes per node (torchrun --nproc_per_node)."
            )
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


def all_reduce_sums(*values: float) -> tuple[float, ...]:
    """Sum each value over all processes (returned unchanged in a plain run)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    totals = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        totals = totals.cuda()
    dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    return tuple(totals.tolist())


def shard_dataloaders(
    train_dataloader: DataLoader, test_dataloader: DataLoader, context: DistributedContext, seed: int
) -> tuple[DataLoader, DataLoader]:
    """Rebuild both dataloaders so that each process reads only its share of the data.

    Training uses ``DistributedSampler``: every epoch one shuffle (seeded by ``seed`` and the epoch, the
    same on every rank) is cut into ``world_size`` interleaved shards of equal length, so all ranks take
    the same number of steps. When the image count does not divide evenly, the sampler repeats up to
    ``world_size - 1`` images to even out the shards; the training metrics then count those twice.
    Testing takes every ``world_size``-th image from this rank's position, without repeats, so the
    reduced test metrics are exactly those of the whole test set.

    The batch size stays per process: the effective batch is ``batch_size * world_size``. Each training
    shard drops its last, incomplete batch, unless the shard holds less than one batch.
    """
    train_sampler = DistributedSampler(
        train_dataloader.dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=seed
    )
    # Each shard's last, incomplete batch is dropped (when a full one remains): with many processes it is
    # often a batch of one or two images whose gradient would weigh as much as a full batch's.
    drop_last = len(train_sampler) >= train_dataloader.batch_size
    return (_with_data(train_dataloader, train_dataloader.dataset, train_sampler, drop_last),
            shard_eval_dataloader(test_dataloader, context))


def shard_eval_dataloader(dataloader: DataLoader, context: DistributedContext) -> DataLoader:
    """This process's share of an evaluation set: every ``world_size``-th item from its rank, no repeats.

    The metrics summed over processes (``all_reduce_sums``) are then exactly those of the whole set.
    """
    shard = Subset(dataloader.dataset, range(context.rank, len(dataloader.dataset), context.world_size))
    return _with_data(dataloader, shard, None, drop_last=False)


def _with_data(dataloader: DataLoader, dataset, sampler: Optional[DistributedSampler], drop_last: bool) -> DataLoader:
    return DataLoader(
        dataset, batch_size=dataloader.batch_size, sampler=sampler, shuffle=False,
        num_workers=dataloader.num_workers, pin_memory=dataloader.pin_memory, drop_last=drop_last,
        collate_fn=dataloader.collate_fn,
    )


def set_epoch(dataloader: DataLoader, epoch: int) -> None:
    """Tell a ``DistributedSampler`` which epoch starts, so that each epoch has a new shuffle."""
    if isinstance(dataloader.sampler, DistributedSampler):
        dataloader.sampler.set_epoch(epoch)


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
