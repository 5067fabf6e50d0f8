"""Training and testing loops: one epoch at a time (``train_step``, ``test_step``) and many (``train``).

Read ``train_step`` first: it is the course's loop, five numbered lines per batch,

    1. forward pass             y_pred = model(X)
    2. loss                     loss = loss_fn(y_pred, y)
    3. optimizer zero grad
    4. loss backward
    5. optimizer step

with loss and accuracy summed over samples. Steps 3-5 go through ``OptimisationSteps``, which holds
every option layered on top of the plain loop, each off by default: gradient accumulation, a
learning-rate scheduler stepped once per optimisation step, gradient clipping by global norm (the
paper used these three, section 4.1 and appendix B.1), loss scaling for float16 mixed precision, and
DDP's gradient exchange. ``autocast`` chooses the mixed-precision dtype.

``train`` runs the epochs. It can continue a run (``start_epoch``, ``results``) and calls
``on_epoch_end`` after each epoch, which ``python -m going_modular.train`` uses to write checkpoints.

Under ``torchrun`` (see ``distributed``) the same loops run in every process: the metrics are summed
over all processes, so each epoch's numbers are those of the whole dataset, and only rank 0 prints.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Iterator
from typing import Any, Callable, NamedTuple, Optional, Union

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from going_modular.training import distributed

Results = dict[str, list[float]]
Device = Union[str, torch.device]


# ------------------------------------------------------------------------------------ the course's loop


def train_step(
    model: nn.Module,
    dataloader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: Device,
    *,
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None,
    max_grad_norm: Optional[float] = None,
    accumulation_steps: int = 1,
    amp: bool = False,
    grad_scaler: Optional[torch.amp.GradScaler] = None,
    max_batches: Optional[int] = None,
    epoch: int = 1,
    progress: bool = False,
    on_step_end: Optional[Callable[["StepRecord"], None]] = None,
) -> tuple[float, float]:
    """Train ``model`` for one epoch.

    Args:
        model: the model to train (put in train mode here).
        dataloader: yields (images, labels).
        loss_fn: e.g. ``nn.CrossEntropyLoss()``.
        optimizer: updates the model's parameters.
        device: where the batches go (the model should already be there).
        scheduler: stepped after every optimisation step (not every epoch), except a step that the
            gradient scaler skipped.
        max_grad_norm: clip the global gradient norm to this value (the paper: 1.0).
        accumulation_steps: add up gradients of this many batches before each optimisation step, to
            emulate a batch that many times larger. A last group with fewer batches is averaged over
            its own size.
        amp: mixed precision, in the dtype ``autocast_dtype`` chooses for the device.
        grad_scaler: the loss scaler float16 mixed precision needs (``make_grad_scaler``). It must live
            for the whole run, so create it once and pass it to every epoch (``train`` does).
        max_batches: stop after this many batches (a reduced run); None for all.
        epoch: the epoch number, for messages and ``on_step_end``.
        progress: show a progress bar over the batches.
        on_step_end: called with a ``StepRecord`` after every optimisation step.

    Returns:
        (mean loss per sample, accuracy as a fraction of samples).

    Raises:
        FloatingPointError: the loss became NaN or infinite (the message names epoch and step).
        ValueError: accumulation_steps or max_batches below 1, or float16 mixed precision without a
            ``grad_scaler``.
    """
    device = torch.device(device)
    total = num_batches(dataloader, max_batches)
    steps = OptimisationSteps(model, optimizer, total, accumulation_steps=accumulation_steps, scheduler=scheduler,
                              max_grad_norm=max_grad_norm, grad_scaler=_checked_scaler(device, amp, grad_scaler),
                              epoch=epoch, on_step_end=on_step_end)
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for step, (X, y) in batches(dataloader, max_batches, f"train {epoch}", progress):
        X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp):
            y_pred = model(X)                   # 1. forward pass
            loss = loss_fn(y_pred, y)           # 2. loss
        total_loss += _check_finite(loss, epoch, step) * len(y)
        steps.zero_grad()                       # 3. optimizer zero grad (first batch of a group)
        steps.backward(loss)                    # 4. loss backward (scaled, averaged over the group)
        steps.step()                            # 5. optimizer step (last batch of a group)
        correct += (y_pred.argmax(dim=1) == _class_labels(y)).sum().item()
        seen += len(y)
    return _mean_loss_and_accuracy(total_loss, correct, seen)


def test_step(
    model: nn.Module,
    dataloader: DataLoader,
    loss_fn: nn.Module,
    device: Device,
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
        for _, (X, y) in batches(dataloader, max_batches, "test", progress):
            X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast(device, amp):
                y_pred = model(X)
                loss = loss_fn(y_pred, y)
            total_loss += loss.item() * len(y)
            correct += (y_pred.argmax(dim=1) == y).sum().item()
            seen += len(y)
    return _mean_loss_and_accuracy(total_loss, correct, seen)


def train(
    model: nn.Module,
    train_dataloader: DataLoader,
    test_dataloader: DataLoader,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    epochs: int,
    device: Device,
    *,
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None,
    max_grad_norm: Optional[float] = None,
    accumulation_steps: int = 1,
    amp: bool = False,
    grad_scaler: Optional[torch.amp.GradScaler] = None,
    max_batches: Optional[int] = None,
    progress: bool = True,
    val_dataloader: Optional[DataLoader] = None,
    eval_model: Optional[nn.Module] = None,
    start_epoch: int = 1,
    results: Optional[Results] = None,
    on_step_end: Optional[Callable[["StepRecord"], None]] = None,
    on_epoch_end: Optional[Callable[[int, Results], None]] = None,
) -> Results:
    """Train and test ``model`` for ``epochs`` epochs, printing one line of metrics per epoch.

    The keyword arguments up to ``progress`` are those of ``train_step`` (``max_batches`` limits every
    loop). When float16 mixed precision needs a gradient scaler and none is given, one is made here,
    once for the whole run.

    Args:
        val_dataloader: when given, the model is also evaluated on it after every epoch ("val_loss",
            "val_acc"): the data to choose settings by, so that the test set reports a final number.
        eval_model: the model to evaluate after each epoch instead of ``model``, e.g. an exponential
            moving average of its weights (``torch.optim.swa_utils.AveragedModel``).
        start_epoch: the first epoch to run (1-based), to continue an interrupted run up to ``epochs``.
        results: the history of the epochs before ``start_epoch``; the new epochs are appended to it.
        on_step_end: called with a ``StepRecord`` after every optimisation step.
        on_epoch_end: called as ``on_epoch_end(epoch, results)`` after every epoch's metrics are in
            ``results`` (``python -m going_modular.train`` writes its checkpoint there).

    Returns:
        The course's results dictionary: lists "train_loss", "train_acc", "test_loss", "test_acc" (and
        "val_loss", "val_acc" with a ``val_dataloader``), one entry per epoch, accuracies as fractions.

    Raises:
        ValueError: ``results`` does not hold exactly the ``start_epoch - 1`` earlier epochs.
    """
    results = _continued_results(results, start_epoch, with_validation=val_dataloader is not None)
    grad_scaler = grad_scaler or make_grad_scaler(device, amp)
    main_process = distributed.is_main_process()
    progress = progress and main_process
    for epoch in tqdm(range(start_epoch, epochs + 1), desc="epochs", disable=not progress):
        distributed.set_epoch(train_dataloader, epoch)
        metrics = dict(zip(("train_loss", "train_acc"), train_step(
            model, train_dataloader, loss_fn, optimizer, device, scheduler=scheduler, max_grad_norm=max_grad_norm,
            accumulation_steps=accumulation_steps, amp=amp, grad_scaler=grad_scaler, max_batches=max_batches,
            epoch=epoch, progress=progress, on_step_end=on_step_end,
        )))
        evaluations = {"test": test_dataloader, "val": val_dataloader}
        for split, loader in evaluations.items():
            if loader is not None:
                loss, accuracy = test_step(eval_model or model, loader, loss_fn, device, amp=amp,
                                           max_batches=max_batches, progress=progress)
                metrics.update({f"{split}_loss": loss, f"{split}_acc": accuracy})
        if main_process:
            print(f"Epoch: {epoch} | " + " | ".join(f"{key}: {value:.4f}" for key, value in metrics.items()))
        for key, value in metrics.items():
            results[key].append(value)
        if on_epoch_end is not None:
            on_epoch_end(epoch, results)
    return results


# --------------------------------------------------------------- what steps 3-5 do beyond the plain loop


class StepRecord(NamedTuple):
    """What happened in one optimisation step, for ``on_step_end``.

    Attributes:
        epoch: the epoch (1-based).
        step: the optimisation step within the epoch (0-based).
        lr: the learning rate this step used (of the first parameter group).
        loss: the mean training loss of the step's batches.
        grad_norm: the global gradient norm before clipping; None when clipping is off (give
            ``max_grad_norm=math.inf`` to measure it without clipping).
        skipped: the gradient scaler found infinite or NaN gradients and skipped the update.
    """

    epoch: int
    step: int
    lr: float
    loss: float
    grad_norm: Optional[float]
    skipped: bool


class OptimisationSteps:
    """Steps 3-5 of the loop (zero grad, backward, step) for one epoch, with every option layered in.

    Call ``zero_grad()``, ``backward(loss)`` and ``step()`` once per batch, in that order. Batches are
    taken in groups of ``accumulation_steps``: gradients are zeroed before a group's first batch,
    added up over the group (each batch's loss divided by the group's real size, so the last, shorter
    group of an epoch gets the same weight per batch as the others), and the optimiser steps after its
    last batch. An optimisation step unscales float16 gradients, clips their global norm, steps the
    optimiser and then the scheduler, unless the scaler skipped the step for overflowing gradients.

    Args:
        model: the model being trained (a DDP model skips its gradient exchange inside a group).
        optimizer: the optimiser.
        num_batches: batches in this epoch.
        accumulation_steps: batches per optimisation step.
        scheduler: stepped after every optimisation step that was taken.
        max_grad_norm: clip the global gradient norm to this value; None for no clipping.
        grad_scaler: scales the loss for float16 mixed precision; None otherwise.
        epoch: the epoch, for ``StepRecord``.
        on_step_end: called with a ``StepRecord`` after every optimisation step.

    Raises:
        ValueError: accumulation_steps below 1.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        num_batches: int,
        *,
        accumulation_steps: int = 1,
        scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None,
        max_grad_norm: Optional[float] = None,
        grad_scaler: Optional[torch.amp.GradScaler] = None,
        epoch: int = 1,
        on_step_end: Optional[Callable[[StepRecord], None]] = None,
    ) -> None:
        if accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be at least 1, got {accumulation_steps}.")
        self.model = model
        self.optimizer = optimizer
        self.num_batches = num_batches
        self.accumulation_steps = accumulation_steps
        self.scheduler = scheduler
        self.max_grad_norm = max_grad_norm
        self.grad_scaler = grad_scaler
        self.epoch = epoch
        self.on_step_end = on_step_end
        self.batch = 0         # batches done in this epoch
        self.group_loss = 0.0  # mean loss of the current group's batches so far

    def _group(self) -> tuple[int, int]:
        """(position of this batch in its group, size of the group)."""
        start = self.batch - self.batch % self.accumulation_steps
        return self.batch - start, min(self.accumulation_steps, self.num_batches - start)

    def _last_in_group(self) -> bool:
        position, size = self._group()
        return position == size - 1

    def zero_grad(self) -> None:
        if self._group()[0] == 0:
            self.optimizer.zero_grad(set_to_none=True)
            self.group_loss = 0.0

    def backward(self, loss: torch.Tensor) -> None:
        group_size = self._group()[1]
        loss = loss / group_size
        self.group_loss = self.group_loss + loss.detach()  # a tensor: no wait for the GPU here
        if self.grad_scaler is not None:
            loss = self.grad_scaler.scale(loss)
        # DDP averages gradients across processes in every backward(); inside a group only the local sum
        # is needed, so the exchange waits for the group's last batch.
        with contextlib.nullcontext() if self._last_in_group() else _no_gradient_sync(self.model):
            loss.backward()

    def step(self) -> None:
        if self._last_in_group():
            self._optimizer_step()
        self.batch += 1

    def _optimizer_step(self) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        scaler = self.grad_scaler
        if scaler is not None:
            scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        grad_norm = None
        if self.max_grad_norm is not None:
            grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        skipped = False
        if scaler is not None:
            scale = scaler.get_scale()
            scaler.step(self.optimizer)  # skipped when the gradients hold inf or NaN
            scaler.update()              # ... and then the scale shrinks
            skipped = scaler.get_scale() < scale
        else:
            self.optimizer.step()
        if self.scheduler is not None and not skipped:
            self.scheduler.step()
        if self.on_step_end is not None:
            step = self.batch // self.accumulation_steps
            norm = float(grad_norm) if grad_norm is not None else None
            self.on_step_end(StepRecord(self.epoch, step, lr, float(self.group_loss), norm, skipped))


def _no_gradient_sync(model: nn.Module) -> contextlib.AbstractContextManager:
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------------------- mixed precision


def autocast_dtype(device: Device) -> Optional[torch.dtype]:
    """The dtype mixed precision computes in on ``device``; None where it is not set up.

    bfloat16 on the CPU and on GPUs that compute it natively (compute capability 8.0 and up: A100,
    H100, RTX 30xx and later); float16 on older GPUs (Colab's T4, V100), where bfloat16 is only
    emulated and slow even though ``torch.cuda.is_bf16_supported()`` says True.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16
    if device.type == "cpu":
        return torch.bfloat16
    return None


def autocast(device: Device, amp: bool) -> contextlib.AbstractContextManager:
    """``torch.autocast`` in ``autocast_dtype(device)`` when ``amp`` is on; a no-op otherwise."""
    device = torch.device(device)
    dtype = autocast_dtype(device) if amp else None
    if dtype is None:
        if amp:
            warnings.warn(f"Mixed precision is not set up for device {device.type!r}; training in float32.")
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def make_grad_scaler(device: Device, amp: bool) -> Optional[torch.amp.GradScaler]:
    """A gradient scaler when ``amp`` computes in float16 on ``device``, else None.

    float16 gradients underflow to zero without loss scaling; bfloat16 has float32's range and needs
    none. Make one per run: its scale adapts over the first steps, and a new one would start over.
    """
    if amp and autocast_dtype(device) == torch.float16:
        return torch.amp.GradScaler(torch.device(device).type)
    return None


def _checked_scaler(device: torch.device, amp: bool, grad_scaler: Optional[torch.amp.GradScaler]):
    if grad_scaler is None and amp and autocast_dtype(device) == torch.float16:
        raise ValueError(
            "float16 mixed precision needs a gradient scaler that lives for the whole run: create one with "
            "engine.make_grad_scaler(device, amp=True) before the first epoch and pass grad_scaler= to every "
            "train_step call (engine.train does this for you)."
        )
    return grad_scaler


# ------------------------------------------------------------------------------------------------ helpers


def num_batches(dataloader: DataLoader, max_batches: Optional[int]) -> int:
    """How many batches an epoch takes: all of them, or at most ``max_batches``.

    Raises:
        ValueError: ``max_batches`` is below 1.
    """
    if max_batches is None:
        return len(dataloader)
    if max_batches < 1:
        raise ValueError(f"max_batches must be at least 1 (or None for every batch), got {max_batches}.")
    return min(max_batches, len(dataloader))


def batches(
    dataloader: DataLoader, max_batches: Optional[int], description: str, progress: bool
) -> Iterator[tuple[int, Any]]:
    """Yield ``(step, batch)`` for at most ``max_batches`` batches, with an optional progress bar.

    The bar is updated by hand rather than wrapped around the loader: ``tqdm.auto``'s bar calls
    ``iter()`` on what it wraps, which for a DataLoader starts a second set of worker processes that load
    (and augment) batches nobody uses, and draws from the random number generator, changing the shuffle.
    """
    total = num_batches(dataloader, max_batches)
    with tqdm(total=total, desc=description, leave=False, disable=not progress) as bar:
        for step, batch in enumerate(itertools.islice(dataloader, total)):  # no batch beyond the last is loaded
            yield step, batch
            bar.update(1)


def _class_labels(y: torch.Tensor) -> torch.Tensor:
    """Class indices; for mixed labels (MixUp, CutMix: class probabilities [batch, classes]) the largest part."""
    return y.argmax(dim=1) if y.ndim == 2 else y


def _check_finite(loss: torch.Tensor, epoch: int, step: int) -> float:
    value = loss.item()
    if not math.isfinite(value):
        raise FloatingPointError(
            f"The loss became {value} at epoch {epoch}, step {step}. Training cannot recover from this: "
            f"lower the learning rate, turn on gradient clipping (max_grad_norm=1.0), or check the data."
        )
    return value


def _mean_loss_and_accuracy(total_loss: float, correct: float, seen: float) -> tuple[float, float]:
    total_loss, correct, seen = distributed.all_reduce_sums(total_loss, correct, seen)
    return total_loss / max(seen, 1), correct / max(seen, 1)


def _continued_results(results: Optional[Results], start_epoch: int, with_validation: bool) -> Results:
    keys = ["train_loss", "train_acc", "test_loss", "test_acc"] + (["val_loss", "val_acc"] if with_validation else [])
    if results is None:
        results = {key: [] for key in keys}
    if start_epoch < 1 or sorted(results) != sorted(keys) or any(len(v) != start_epoch - 1 for v in results.values()):
        raise ValueError(
            f"To start at epoch {start_epoch}, results must hold the lists {keys} with the {start_epoch - 1} "
            f"earlier epochs each; got {({key: len(value) for key, value in results.items()})}."
        )
    return {key: list(results[key]) for key in keys}
