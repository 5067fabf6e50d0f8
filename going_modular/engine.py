"""Training and testing loops: one epoch at a time (``train_step``, ``test_step``) and many (``train``).

Everything beyond the course's plain loop is optional and off by default: a learning-rate scheduler
stepped once per optimisation step, gradient clipping by global norm, gradient accumulation and mixed
precision. The paper used the first three (section 4.1 and appendix B.1).

Under ``torchrun`` (see ``distributed``) the same loops run in every process: the metrics are summed
over all processes, so each epoch's numbers are those of the whole dataset, and only rank 0 prints.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Iterator
from typing import Any, Optional, Union

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from going_modular import distributed

Results = dict[str, list[float]]


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast where the hardware has it (CPU, recent GPUs), float16 on older GPUs."""
    if not amp:
        return contextlib.nullcontext()
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    warnings.warn(f"Mixed precision is not set up for device {device.type!r}; training in float32.")
    return contextlib.nullcontext()


def _needs_grad_scaler(device: torch.device, amp: bool) -> bool:
    # float16 gradients underflow without loss scaling; bfloat16 has float32's range and needs none.
    return amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()


def batches(
    dataloader: DataLoader, max_batches: Optional[int], description: str, progress: bool
) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(step, total, batch)`` for at most ``max_batches`` batches, with an optional progress bar.

    The bar is updated by hand rather than wrapped around the loader: ``tqdm.auto``'s bar calls
    ``iter()`` on what it wraps, which for a DataLoader starts a second set of worker processes that load
    (and augment) batches nobody uses, and draws from the random number generator, changing the shuffle.
    """
    total = len(dataloader) if max_batches is None else min(max_batches, len(dataloader))
    with tqdm(total=total, desc=description, leave=False, disable=not progress) as bar:
        for step, batch in enumerate(itertools.islice(dataloader, total)):  # no batch beyond the last is loaded
            yield step, total, batch
            bar.update(1)


def _check_finite(loss: torch.Tensor, epoch: int, step: int) -> float:
    value = loss.item()
    if not math.isfinite(value):
        raise FloatingPointError(
            f"The loss became {value} at epoch {epoch}, step {step}. Training cannot recover from this: "
            f"lower the learning rate, turn on gradient clipping (max_grad_norm=1.0), or check the data."
        )
    return value


def train_step(
    model: nn.Module,
    dataloader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: Union[str, torch.device],
    *,
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None,
    max_grad_norm: Optional[float] = None,
    accumulation_steps: int = 1,
    amp: bool = False,
    max_batches: Optional[int] = None,
    epoch: int = 1,
    progress: bool = False,
) -> tuple[float, float]:
    """Train ``model`` for one epoch.

    Args:
        model: the model to train (put in train mode here).
        dataloader: yields (images, labels).
        loss_fn: e.g. ``nn.CrossEntropyLoss()``.
        optimizer: updates the model's parameters.
        device: where the batches go (the model should already be there).
        scheduler: stepped after every optimisation step (not every epoch).
        max_grad_norm: clip the global gradient norm to this value (the paper: 1.0).
        accumulation_steps: add up gradients of this many batches before each optimisation step,
            to emulate a batch that many times larger.
        amp: mixed precision (bfloat16 autocast on CPU and recent GPUs, float16 with loss scaling on
            older GPUs).
        max_batches: stop after this many batches (a reduced run); None for all.
        epoch: the epoch number, for messages.
        progress: show a progress bar over the batches.

    Returns:
        (mean loss per sample, accuracy as a fraction of samples).

    Raises:
        FloatingPointError: the loss became NaN or infinite (the message names epoch and step).
        ValueError: accumulation_steps < 1.
    """
    if accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be at least 1, got {accumulation_steps}.")
    device = torch.device(device)
    scaler = torch.amp.GradScaler(device.type) if _needs_grad_scaler(device, amp) else None
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total_loss, correct, seen = 0.0, 0, 0
    for step, total, (images, labels) in batches(dataloader, max_batches, f"train {epoch}", progress):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(images)
            loss = loss_fn(logits, labels)
        total_loss += _check_finite(loss, epoch, step) * len(labels)
        correct += (logits.argmax(dim=1) == labels).sum().item()
        seen += len(labels)
        loss = loss / accumulation_steps
        steps_now = (step + 1) % accumulation_steps == 0 or step + 1 == total
        with contextlib.nullcontext() if steps_now else _no_gradient_sync(model):
            if scaler is not None:
                scaler.scale(loss).backward()
            else:
                loss.backward()
        if steps_now:
            _optimizer_step(model, optimizer, scaler, max_grad_norm)
            if scheduler is not None:
                scheduler.step()
    return _mean_loss_and_accuracy(total_loss, correct, seen)


def _no_gradient_sync(model: nn.Module) -> contextlib.AbstractContextManager:
    # DDP averages gradients across processes in every backward(); between optimisation steps only the
    # local sum is needed, so the exchange waits for the last accumulated batch.
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def _mean_loss_and_accuracy(total_loss: float, correct: float, seen: float) -> tuple[float, float]:
    total_loss, correct, seen = distributed.all_reduce_sums(total_loss, correct, seen)
    return total_loss / max(seen, 1), correct / max(seen, 1)


def _optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Optional[torch.amp.GradScaler],
    max_grad_norm: Optional[float],
) -> None:
    if scaler is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    if max_grad_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def test_step(
    model: nn.Module,
    dataloader: DataLoader,
    loss_fn: nn.Module,
    device: Union[str, torch.device],
    *,
    amp: bool = False,
    max_batches: Optional[int] = None,
    progress: bool = False,
) -> tuple[float, float]:
    """Evaluate ``model`` on ``dataloader`` without changing it.

    Returns:
        (mean loss per sample, accuracy as a fraction of samples).
    """
    device = torch.device(device)
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    with torch.inference_mode():
        for _, _, (images, labels) in batches(dataloader, max_batches, "test", progress):
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with _autocast(device, amp):
                logits = model(images)
                loss = loss_fn(logits, labels)
            total_loss += loss.item() * len(labels)
            correct += (logits.argmax(dim=1) == labels).sum().item()
            seen += len(labels)
    return _mean_loss_and_accuracy(total_loss, correct, seen)


def train(
    model: nn.Module,
    train_dataloader: DataLoader,
    test_dataloader: DataLoader,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    epochs: int,
    device: Union[str, torch.device],
    *,
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None,
    max_grad_norm: Optional[float] = None,
    accumulation_steps: int = 1,
    amp: bool = False,
    max_batches: Optional[int] = None,
    progress: bool = True,
) -> Results:
    """Train and test ``model`` for ``epochs`` epochs, printing one line of metrics per epoch.

    The keyword arguments are those of ``train_step`` (``max_batches`` limits both loops).

    Returns:
        The course's results dictionary: lists "train_loss", "train_acc", "test_loss", "test_acc", one
        entry per epoch, accuracies as fractions.
    """
    results: Results = {"train_loss": [], "train_acc": [], "test_loss": [], "test_acc": []}
    main_process = distributed.is_main_process()
    progress = progress and main_process
    for epoch in tqdm(range(1, epochs + 1), desc="epochs", disable=not progress):
        distributed.set_epoch(train_dataloader, epoch)
        train_loss, train_acc = train_step(
            model, train_dataloader, loss_fn, optimizer, device,
            scheduler=scheduler, max_grad_norm=max_grad_norm, accumulation_steps=accumulation_steps,
            amp=amp, max_batches=max_batches, epoch=epoch, progress=progress,
        )
        test_loss, test_acc = test_step(
            model, test_dataloader, loss_fn, device, amp=amp, max_batches=max_batches, progress=progress
        )
        if main_process:
            print(
                f"Epoch: {epoch} | train_loss: {train_loss:.4f} | train_acc: {train_acc:.4f} | "
                f"test_loss: {test_loss:.4f} | test_acc: {test_acc:.4f}"
            )
        for key, value in zip(results, (train_loss, train_acc, test_loss, test_acc)):
            results[key].append(value)
    return results
