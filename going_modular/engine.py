"""Training and testing loops, one epoch (``train_step``, ``test_step``) or many (``train``). Each training batch takes
the course's five steps: 1. forward pass, 2. loss, 3. optimizer zero grad, 4. loss backward, 5. optimizer step.
Options, off by default: gradient accumulation, a per-step scheduler and gradient clipping (section 4.1, appendix
B.1), mixed precision, and DDP under ``torchrun`` (only rank 0 prints)."""
import contextlib
import itertools
import math
import time
import warnings
from collections.abc import Iterator
from typing import Any, Callable, NamedTuple, Optional, Union

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

Results = dict[str, list[float]]
Device = Union[str, torch.device]
Amp = Union[bool, torch.dtype]  # mixed precision: off, on in ``autocast_dtype(device)``, or on in this dtype


class StepRecord(NamedTuple):
    """One optimisation step, passed to ``on_step_end``."""
    epoch: int
    step: int                   # within the epoch, from 0
    lr: float                   # the learning rate this step used
    loss: float                 # the mean loss of its batches
    grad_norm: Optional[float]  # before clipping; None without max_grad_norm (math.inf: measure, do not clip)
    skipped: bool               # the gradient scaler skipped the update (inf or NaN gradients)


def train_step(model: nn.Module, dataloader: DataLoader, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
               device: Device, *, scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None,
               max_grad_norm: Optional[float] = None, accumulation_steps: int = 1, amp: Amp = False,
               grad_scaler: Optional[torch.amp.GradScaler] = None, max_batches: Optional[int] = None, epoch: int = 1,
               progress: Union[bool, tqdm] = False, on_step_end: Optional[Callable[[StepRecord], None]] = None,
               ) -> tuple[float, float]:
    """Train ``model`` for one epoch: (mean loss per sample, accuracy in [0, 1]). FloatingPointError when the loss is
    NaN or infinite; ValueError for accumulation_steps or max_batches below 1, or float16 ``amp`` without a scaler."""
    if accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be at least 1, got {accumulation_steps}.")
    device = torch.device(device)
    if grad_scaler is None:
        if amp_dtype(device, amp) == torch.float16:
            raise ValueError("float16 mixed precision needs one gradient scaler for the whole run: pass "
                             "grad_scaler=engine.make_grad_scaler(device, amp=True) each epoch (engine.train does).")
        grad_scaler = torch.amp.GradScaler(device.type, enabled=False)  # scale/step/update then pass through
    total = num_batches(dataloader, max_batches)
    model.train()
    total_loss, correct, seen, group_loss = 0.0, 0, 0, 0.0
    for step, (X, y) in batches(dataloader, max_batches, f"train {epoch}", progress):
        X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
        first = step - step % accumulation_steps
        group = min(accumulation_steps, total - first)  # batches in this optimisation step (fewer at the end)
        last = step == first + group - 1
        with autocast(device, amp):
            y_pred = model(X)                                    # 1. forward pass
            loss = loss_fn(y_pred, y)                            # 2. loss
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"The loss became {value} at epoch {epoch}, step {step}: lower the learning "
                                     f"rate, turn on gradient clipping (max_grad_norm=1.0), or check the data.")
        labels = y.argmax(dim=1) if y.ndim == 2 else y  # MixUp/CutMix labels are class probabilities
        total_loss, seen = total_loss + value * len(y), seen + len(y)
        logits = y_pred[0] if isinstance(y_pred, tuple) else y_pred  # a distilled student's class head first
        correct += (logits.argmax(dim=1) == labels).sum().item()
        if step == first:
            optimizer.zero_grad(set_to_none=True)                # 3. optimizer zero grad
            group_loss = 0.0
        group_loss += value / group
        no_sync = not last and isinstance(model, nn.parallel.DistributedDataParallel)  # DDP: average once per group
        with model.no_sync() if no_sync else contextlib.nullcontext():
            grad_scaler.scale(loss / group).backward()           # 4. loss backward
        if last:
            grad_scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            grad_norm = None if max_grad_norm is None else nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            lr, scale = optimizer.param_groups[0]["lr"], grad_scaler.get_scale()
            grad_scaler.step(optimizer)                          # 5. optimizer step (skipped on inf/NaN gradients)
            grad_scaler.update()
            skipped = grad_scaler.get_scale() < scale  # a skip shrinks the scale; a disabled scaler's stays 1.0
            if scheduler is not None and not skipped:
                scheduler.step()
            if on_step_end is not None:
                on_step_end(StepRecord(epoch, step // accumulation_steps, lr, group_loss,
                                       None if grad_norm is None else float(grad_norm), skipped))
    return _mean_loss_and_accuracy(total_loss, correct, seen, device)


def test_step(model: nn.Module, dataloader: DataLoader, loss_fn: nn.Module, device: Device, *, amp: Amp = False,
              max_batches: Optional[int] = None, progress: Union[bool, tqdm] = False) -> tuple[float, float]:
    """Evaluate ``model`` without changing it; return (mean loss per sample, accuracy as a fraction)."""
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    with torch.inference_mode():
        for _, (X, y) in batches(dataloader, max_batches, "test", progress):
            X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast(device, amp):
                y_pred = model(X)
                loss = loss_fn(y_pred, y)
            total_loss, seen = total_loss + loss.item() * len(y), seen + len(y)
            correct += (y_pred.argmax(dim=1) == y).sum().item()
    return _mean_loss_and_accuracy(total_loss, correct, seen, device)


def train(model: nn.Module, train_dataloader: DataLoader, test_dataloader: DataLoader, optimizer: torch.optim.Optimizer,
          loss_fn: nn.Module, epochs: int, device: Device, *, amp: Amp = False,
          grad_scaler: Optional[torch.amp.GradScaler] = None, max_batches: Optional[int] = None, progress: bool = True,
          val_dataloader: Optional[DataLoader] = None, eval_model: Optional[nn.Module] = None, start_epoch: int = 1,
          results: Optional[Results] = None, on_epoch_end: Optional[Callable[[int, Results], None]] = None,
          print_every: int = 1, **step_options: Any) -> Results:
    """Train and test ``model`` for ``epochs`` epochs; return the course's results dict (one entry per epoch). Prints
    the metrics of the first, last and every ``print_every``-th epoch, and the projected time after the first.
    ``step_options`` (scheduler, max_grad_norm, accumulation_steps, on_step_end) go to ``train_step``; ``eval_model``
    (e.g. an EMA of the weights) is tested instead of ``model``; ``start_epoch`` and ``results`` (the earlier epochs'
    lists; ValueError if they do not match) continue a run."""
    splits = ["train", "test"] + (["val"] if val_dataloader is not None else [])
    keys = [f"{split}_{metric}" for split in splits for metric in ("loss", "acc")]
    results = {key: [] for key in keys} if results is None else results
    if start_epoch < 1 or sorted(results) != sorted(keys) or any(len(v) != start_epoch - 1 for v in results.values()):
        raise ValueError(f"To start at epoch {start_epoch}, results must hold the lists {keys} with the "
                         f"{start_epoch - 1} earlier epochs each; got { {k: len(v) for k, v in results.items()} }.")
    results = {key: list(results[key]) for key in keys}
    grad_scaler = grad_scaler or make_grad_scaler(device, amp)  # one for the whole run: its scale adapts
    main_process = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    progress = progress and main_process
    start = time.perf_counter()
    epochs_bar = tqdm(range(start_epoch, epochs + 1), desc="epochs", disable=not progress)
    progress = epochs_bar if progress else False  # the batches show on it: one bar, however many epochs
    for epoch in epochs_bar:
        if isinstance(train_dataloader.sampler, DistributedSampler):
            train_dataloader.sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank
        metrics = dict(zip(("train_loss", "train_acc"), train_step(
            model, train_dataloader, loss_fn, optimizer, device, amp=amp, grad_scaler=grad_scaler,
            max_batches=max_batches, epoch=epoch, progress=progress, **step_options)))
        for split, loader in (("test", test_dataloader), ("val", val_dataloader)):
            if loader is not None:
                metrics[f"{split}_loss"], metrics[f"{split}_acc"] = test_step(
                    model if eval_model is None else eval_model, loader, loss_fn, device, amp=amp,
                    max_batches=max_batches, progress=progress)
        if main_process and (epoch in (start_epoch, epochs) or epoch % print_every == 0):
            print(f"Epoch: {epoch} | " + " | ".join(f"{key}: {value:.4f}" for key, value in metrics.items()))
        if main_process and epoch == start_epoch < epochs:  # the first epoch's time, and the run's at that pace
            seconds, run_epochs = time.perf_counter() - start, epochs - start_epoch + 1
            first, run = (f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" for s in (seconds, seconds * run_epochs))
            print(f"(the first epoch took {first}; {run_epochs} epochs at this pace: about {run})")
        for key, value in metrics.items():
            results[key].append(value)
        if on_epoch_end is not None:
            on_epoch_end(epoch, results)
    return results


def autocast_dtype(device: Device) -> Optional[torch.dtype]:
    """Mixed precision's dtype on ``device`` (None where not set up): bfloat16 on the CPU and on GPUs of
    compute capability 8.0+; float16 on older GPUs (T4, V100), which only emulate bfloat16, slowly."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16
    return torch.bfloat16 if device.type == "cpu" else None


def amp_dtype(device: Device, amp: Amp) -> Optional[torch.dtype]:
    """The dtype mixed precision computes in: ``amp`` if it is one, ``autocast_dtype(device)`` if True, None if off."""
    return amp if isinstance(amp, torch.dtype) else autocast_dtype(device) if amp else None


def autocast(device: Device, amp: Amp) -> contextlib.AbstractContextManager:
    """``torch.autocast`` in ``amp_dtype(device, amp)``; a no-op when ``amp`` is off."""
    device, dtype = torch.device(device), amp_dtype(device, amp)
    if amp and dtype is None:
        warnings.warn(f"Mixed precision is not set up for device {device.type!r}; training in float32.")
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def make_grad_scaler(device: Device, amp: Amp) -> Optional[torch.amp.GradScaler]:
    """The loss scaler float16 ``amp`` needs (its gradients underflow without one), else None. One per run."""
    return torch.amp.GradScaler(torch.device(device).type) if amp_dtype(device, amp) == torch.float16 else None


def num_batches(dataloader: DataLoader, max_batches: Optional[int]) -> int:
    """Batches in an epoch: all of them, or at most ``max_batches`` (ValueError below 1)."""
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be at least 1 (or None for every batch), got {max_batches}.")
    return len(dataloader) if max_batches is None else min(max_batches, len(dataloader))


def batches(dataloader: DataLoader, max_batches: Optional[int], description: str,
            progress: Union[bool, tqdm]) -> Iterator[tuple[int, Any]]:
    """Yield ``(step, batch)`` for at most ``max_batches`` batches, with an optional progress bar (updated by
    hand: tqdm wrapped around a DataLoader calls ``iter()`` twice, which changes the shuffle). Given a bar, the
    batch is shown on it instead: ``train`` keeps one bar a training, which a notebook saves as a few kB."""
    total = num_batches(dataloader, max_batches)
    if isinstance(progress, tqdm):
        for step, batch in enumerate(itertools.islice(dataloader, total)):
            progress.set_postfix_str(f"{description}: batch {step + 1}/{total}")
            yield step, batch
        return
    with tqdm(total=total, desc=description, leave=False, disable=not progress) as bar:
        for step, batch in enumerate(itertools.islice(dataloader, total)):  # no batch beyond the last is loaded
            yield step, batch
            bar.update(1)


def _mean_loss_and_accuracy(total_loss: float, correct: float, seen: float, device: Device) -> tuple[float, float]:
    if dist.is_available() and dist.is_initialized():  # every process reports the metrics of the whole dataset
        totals = torch.tensor([total_loss, correct, seen], dtype=torch.float64, device=device)
        dist.all_reduce(totals)
        total_loss, correct, seen = totals.tolist()
    return total_loss / max(seen, 1), correct / max(seen, 1)
