"""Checkpoints that let an interrupted training run (``python -m going_modular.train --resume``) continue as if it
had never stopped: the model's, optimiser's, scheduler's, gradient scaler's and EMA's states, where the run stands,
every process's random generators (the draws of the remaining epochs) and the configuration (to refuse resuming with
other settings). Written atomically (a kill mid-write leaves the previous one), read with ``weights_only=True``."""
from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from going_modular import utils
from going_modular.training import distributed

FORMAT_VERSION = 1


class ResumeError(ValueError):
    """A run cannot be resumed: no checkpoint, an unreadable one, or one from a different configuration."""


def checkpoint_path(output_dir: Path, name: str) -> Path:
    """Where a run named ``name`` keeps its checkpoint."""
    return Path(output_dir) / f"{name}_checkpoint.pth"


def save_checkpoint(path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Optional[LRScheduler],
                    grad_scaler: Optional[torch.amp.GradScaler], averaged_model: Optional[nn.Module] = None, epoch: int,
                    results: Mapping[str, Any], config: Mapping[str, Any], training_seconds: float) -> Optional[Path]:
    """Write the state of a run after ``epoch`` to ``path``; ``path`` in the process that wrote it, else None. Under
    torchrun every process calls it (each gives its generators), rank 0 writes; ``model`` is not DDP-wrapped."""
    numpy_state = np.random.get_state()  # in plain values, for weights_only loading
    generators = {"python": random.getstate(), "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
                  "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        generators["cuda"] = torch.cuda.get_rng_state_all()
    rng_states = distributed.gather_objects(generators)
    if not distributed.is_main_process():
        return None
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "grad_scaler": grad_scaler,
             "averaged_model": averaged_model}
    state = {"format_version": FORMAT_VERSION, **{name: part.state_dict() if part is not None else None
                                                  for name, part in parts.items()},
             "epoch": epoch, "results": dict(results), "config": dict(config),
             "training_seconds": training_seconds, "rng_states": rng_states}
    return utils.write_atomically(path, lambda file: torch.save(state, file))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` onto the CPU; ResumeError when there is no file at ``path``
    or it is not a readable training checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise ResumeError(f"There is no checkpoint to resume from at {path}. Give the --output-dir and --model-name "
                          f"of the interrupted run (or the checkpoint's path after --resume), or start the run without "
                          f"--resume.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file ends the same way: it cannot be resumed from
        raise ResumeError(f"{path} could not be read as a training checkpoint ({type(error).__name__}: {error}). "
                          f"Start the run again without --resume.") from error
    if not isinstance(state, Mapping) or state.get("format_version") != FORMAT_VERSION:
        raise ResumeError(f"{path} is not a training checkpoint of python -m going_modular.train (format "
                          f"{FORMAT_VERSION}). Start the run again without --resume.")
    return dict(state)


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """One line per setting whose value differs between a checkpoint's configuration and the current one."""
    ignored = set(ignore)
    return [f"{name}: {saved.get(name)!r} in the checkpoint, {current.get(name)!r} now" for name in
            dict.fromkeys([*saved, *current]) if name not in ignored and saved.get(name) != current.get(name)]


def restore(state: Mapping[str, Any], *, model: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: Optional[LRScheduler], grad_scaler: Optional[torch.amp.GradScaler],
            averaged_model: Optional[nn.Module] = None, rank: int = 0) -> None:
    """Load a checkpoint's states into freshly built objects, and this process's random number generators. Call it
    last: anything built afterwards would draw from the restored generators. ResumeError when another number of
    processes wrote it, or this run differs in having a scheduler, scaler or EMA."""
    if rank >= (processes := len(state["rng_states"])):
        raise ResumeError(f"The checkpoint was written by {processes} process(es); resume it with as many.")
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "grad_scaler": grad_scaler,
             "averaged_model": averaged_model}
    for name, part in parts.items():
        if (state[name] is None) != (part is None):
            raise ResumeError(f"The checkpoint {'has no' if state[name] is None else 'has a'} {name} state, "
                              f"this run {'has' if part is not None else 'has none'}: resume with the same settings "
                              f"on the same kind of device.")
    for name, part in parts.items():
        if part is not None:
            part.load_state_dict(state[name])
    generators = state["rng_states"][rank]
    version, internal, gauss = generators["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = generators["numpy"]
    np.random.set_state((numpy_state[0], np.array(numpy_state[1], dtype=np.uint32), *numpy_state[2:]))
    torch.set_rng_state(generators["torch"])
    if "cuda" in generators and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(generators["cuda"])


def checkpoint_to_resume(path: Path, resume: bool, config: Mapping[str, Any], ignore: Iterable[str],
                         results_path: Path) -> Optional[dict[str, Any]]:
    """The checkpoint at ``path`` that ``train --resume`` continues, checked against this run's ``config`` (the keys
    in ``ignore`` may differ); None for a new run (``resume`` False). ResumeError when a new run would overwrite an
    interrupted run's checkpoint, the run has finished (results at ``results_path``), or its settings differ."""
    if not resume:
        if path.exists():  # a new run would overwrite it after its first epoch
            raise ResumeError(f"{path} holds the checkpoint of an interrupted run. Add --resume to continue it, or "
                              f"delete it (or choose another --output-dir or --model-name) to start a new run.")
        return None
    if not path.exists() and results_path.exists():
        raise ResumeError(f"There is no checkpoint at {path}: the run finished (a finished run removes its "
                          f"checkpoint), and its results are in {results_path}. To train again, omit --resume.")
    state = load_checkpoint(path)
    if differences := config_differences(state["config"], config, ignore=ignore):
        raise ResumeError(f"The checkpoint {path} was written with other settings, so resuming would not continue "
                          f"the same run: {'; '.join(differences)}. Give the flags of the interrupted run, or start a "
                          f"new run without --resume.")
    return state
