"""Utilities used across the course: saving and loading weights safely, seeding, choosing a device.

The ZTM course's ``utils.py`` (save_model) and ``helper_functions.py`` (set_seeds), made safe:
saves are atomic and loads never unpickle code (``weights_only=True``).
"""
from __future__ import annotations

import json
import os
import pickle
import random
import secrets
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union

import numpy as np
import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from going_modular.common import settings

PathLike = Union[str, Path]

_CHECKPOINT_SUFFIXES = (".pth", ".pt")
# Prefixes that DistributedDataParallel / nn.DataParallel ("module.") and torch.compile ("_orig_mod.")
# put in front of every parameter name of the model they wrap.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_TRAINING_CHECKPOINT_KEYS = {"model", "optimizer", "epoch"}


def save_model(model: torch.nn.Module, target_dir: PathLike, model_name: str) -> Path:
    """Save a model's ``state_dict`` to ``target_dir / model_name`` atomically.

    The weights are first written to a temporary file in the same directory, flushed to disk,
    then moved over the target with ``os.replace``. An interrupted save (an error, Ctrl-C, a full
    disk) therefore never destroys an earlier good file and never leaves a half-written one.

    Args:
        model: the model whose ``state_dict`` to save.
        target_dir: directory to save into; created (with parents) when missing.
        model_name: file name, ending with ".pth" or ".pt".

    Returns:
        The path of the saved file.

    Raises:
        ValueError: ``model_name`` does not end with ".pth" or ".pt".
    """
    if not model_name.endswith(_CHECKPOINT_SUFFIXES):
        raise ValueError(f"model_name should end with '.pth' or '.pt', got {model_name!r}.")
    model_save_path = Path(target_dir) / model_name
    write_atomically(model_save_path, lambda file: torch.save(model.state_dict(), file))
    print(f"[INFO] Saved model to: {settings.display_path(model_save_path)}")
    return model_save_path


def save_json(data: Mapping, path: PathLike) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically (see ``save_model``); returns the path."""
    path = Path(path)
    write_atomically(path, lambda file: file.write(json.dumps(data, indent=2).encode()))
    return path


def write_atomically(path: PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then move it over ``path`` in one step.

    A failure or kill during ``write`` leaves an earlier file at ``path`` intact (see ``save_model``).

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory as the target, so os.replace is a rename within one filesystem (atomic).
    # Opened with "xb" rather than tempfile.mkstemp so the file gets the usual umask
    # permissions, not mkstemp's owner-only 0600.
    temporary_path = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary_path, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary_path, path)
        return path
    except BaseException:
        # BaseException: a KeyboardInterrupt mid-write must not leave the temporary file behind either.
        temporary_path.unlink(missing_ok=True)
        raise


class CheckpointError(ValueError):
    """A file cannot be loaded as the model's weights: not a checkpoint, unsafe, or from another model."""


def load_model(
    model: torch.nn.Module,
    model_path: PathLike,
    device: Optional[Union[torch.device, str]] = None,
) -> torch.nn.Module:
    """Load a ``state_dict`` saved by :func:`save_model` into ``model``, refusing pickled code.

    The file is read with ``torch.load(..., map_location="cpu", weights_only=True)``: only tensors
    and plain containers are accepted, so a checkpoint cannot run code while it loads, and a file
    saved on a GPU loads on a machine without one. Weights saved from a model wrapped in
    ``DistributedDataParallel``/``nn.DataParallel`` (keys starting "module.") or ``torch.compile``
    ("_orig_mod.") load too, and so do the model weights of a training checkpoint written by
    ``python -m going_modular.train``. When the weights do not fit, ``model`` is left unchanged.

    Args:
        model: a model with the same architecture and configuration as the saved one.
        model_path: path of the checkpoint file.
        device: when given, the model is moved there (``model.to(device)``) after loading. When
            None the model stays on the device it is already on.

    Returns:
        ``model`` itself, with the loaded weights.

    Raises:
        FileNotFoundError: there is no file at ``model_path``.
        CheckpointError (a ValueError): the file is not a PyTorch checkpoint at all (torch.save writes
            a zip archive); it holds pickled Python objects beyond tensors (it could run arbitrary code);
            it is damaged; or its weights do not fit the model (torch's message lists the missing,
            unexpected and mis-shaped keys).
    """
    path = Path(model_path)
    state_dict = _read_state_dict(path)
    for prefix in _WRAPPER_PREFIXES:
        consume_prefix_in_state_dict_if_present(state_dict, prefix)
    _load_unchanged_on_error(model, state_dict, path)
    if device is not None:
        model.to(device)
    print(f"[INFO] Loaded model weights from: {settings.display_path(path)}")
    return model


def _read_state_dict(path: Path) -> dict:
    """The state dict in the file at ``path``, read without unpickling code."""
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {path} (relative paths start from {Path.cwd()}).")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint: torch.save writes a zip archive, and this file is not one. "
            f"It may be another kind of file renamed to {path.suffix or 'this name'}, a download that failed "
            "or broke off, or a copy that was cut short. Save the model again with "
            "going_modular.utils.save_model, or download the file again."
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} contains pickled Python objects beyond tensors, and loading it could run arbitrary "
            "code, so it was not loaded. If you trust where it came from, load it once yourself with "
            "torch.load(..., weights_only=False), put the weights into the model and re-save only its "
            "state_dict with going_modular.utils.save_model."
        ) from error
    except (RuntimeError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"{path} is a zip archive but not a readable PyTorch checkpoint; it may be damaged "
            f"({type(error).__name__}: {error}). Save or download it again."
        ) from error
    if isinstance(loaded, Mapping) and _TRAINING_CHECKPOINT_KEYS <= loaded.keys():
        loaded = loaded["model"]  # a checkpoint of python -m going_modular.train: its model weights
    if not isinstance(loaded, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(loaded).__name__}, not a state dict. Save checkpoints with "
            "going_modular.utils.save_model (which saves model.state_dict())."
        )
    return OrderedDict(loaded)


def _load_unchanged_on_error(model: torch.nn.Module, state_dict: dict, path: Path) -> None:
    """``model.load_state_dict(state_dict)``, except that a state dict that does not fit changes nothing.

    ``load_state_dict`` copies every tensor that fits before it reports the ones that do not, so for a
    state dict whose keys or shapes differ, the model's own tensors are put back after the report.
    """
    expected = model.state_dict()
    fits = expected.keys() == state_dict.keys() and all(
        isinstance(state_dict[key], torch.Tensor) and state_dict[key].shape == tensor.shape
        for key, tensor in expected.items()
    )
    if fits:
        model.load_state_dict(state_dict)
        return
    original = {key: tensor.detach().clone() for key, tensor in expected.items()}
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        model.load_state_dict(original)
        raise CheckpointError(
            f"The checkpoint {path} was saved from a different architecture or configuration than this "
            f"{type(model).__name__}; build the model with the same settings as the one that was saved. {error}"
        ) from None


def set_seeds(seed: int = 42) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every CUDA device).

    Args:
        seed: the seed to use.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)  # a no-op without CUDA


def get_device() -> torch.device:
    """Return the best available device: "cuda", then "mps" (Apple silicon), else "cpu".

    Returns:
        The chosen ``torch.device``.
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
