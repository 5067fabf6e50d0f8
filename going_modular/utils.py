"""Utilities used across the course: saving and loading weights safely, seeding, choosing a device.

The ZTM course's ``utils.py`` (save_model) and ``helper_functions.py`` (set_seeds), made safe:
saves are atomic and loads never unpickle code (``weights_only=True``).
"""
from __future__ import annotations

import json
import os
import pickle
import random
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union

import numpy as np
import torch

PathLike = Union[str, Path]

_CHECKPOINT_SUFFIXES = (".pth", ".pt")
_MAX_MISMATCHES_SHOWN = 5


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
    _atomic_write(model_save_path, lambda file: torch.save(model.state_dict(), file))
    print(f"[INFO] Saved model to: {model_save_path}")
    return model_save_path


def save_json(data: Mapping, path: PathLike) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically (see ``save_model``); returns the path."""
    path = Path(path)
    _atomic_write(path, lambda file: file.write(json.dumps(data, indent=2).encode()))
    return path


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then move it over ``path`` in one step."""
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
    except BaseException:
        # BaseException: a KeyboardInterrupt mid-write must not leave the temporary file behind either.
        temporary_path.unlink(missing_ok=True)
        raise


def load_model(
    model: torch.nn.Module,
    model_path: PathLike,
    device: Optional[Union[torch.device, str]] = None,
) -> torch.nn.Module:
    """Load a ``state_dict`` saved by :func:`save_model` into ``model``, refusing pickled code.

    The file is read with ``torch.load(..., map_location="cpu", weights_only=True)``: only tensors
    and plain containers are accepted, so a checkpoint cannot run code while it loads, and a file
    saved on a GPU loads on a machine without one. The tensors are then copied into the model's
    own parameters, wherever they live.

    Args:
        model: a model with the same architecture and configuration as the saved one.
        model_path: path of the checkpoint file.
        device: when given, the model is moved there (``model.to(device)``) after loading. When
            None the model stays on the device it is already on.

    Returns:
        ``model`` itself, with the loaded weights.

    Raises:
        FileNotFoundError: there is no file at ``model_path``.
        ValueError: the file contains pickled Python objects beyond tensors (it could run
            arbitrary code); the file is not a readable checkpoint; or the state dict does not fit
            the model (saved from a different architecture or configuration).
    """
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {path} (relative paths start from {Path.cwd()}).")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} contains pickled Python objects beyond tensors, and loading it could run arbitrary "
            "code, so it was not loaded. If you trust where it came from, load it once yourself with "
            "torch.load(..., weights_only=False), put the weights into the model and re-save only its "
            f"state_dict with going_modular.utils.save_model.{_weights_unpickler_reason(error)}"
        ) from None
    except (RuntimeError, KeyError, EOFError) as error:
        # What torch raises for a truncated file or one that is not a checkpoint at all.
        raise ValueError(
            f"{path} could not be read as a PyTorch checkpoint; it may be truncated or not a checkpoint "
            f"({type(error).__name__}: {error})."
        ) from error

    if not isinstance(state_dict, Mapping):
        raise ValueError(
            f"{path} holds a {type(state_dict).__name__}, not a state dict. Save checkpoints with "
            "going_modular.utils.save_model (which saves model.state_dict())."
        )
    mismatches = _state_dict_mismatches(model.state_dict(), state_dict)
    if mismatches:
        shown = "; ".join(mismatches[:_MAX_MISMATCHES_SHOWN])
        hidden = len(mismatches) - _MAX_MISMATCHES_SHOWN
        more = f" (and {hidden} more)" if hidden > 0 else ""
        raise ValueError(
            f"The checkpoint {path} was saved from a different architecture or configuration than "
            f"this {type(model).__name__}: {len(mismatches)} mismatch(es): {shown}{more}. Build the model "
            f"with the same settings as the one that was saved.{_wrapped_model_hint(state_dict)}"
        )
    model.load_state_dict(state_dict)
    if device is not None:
        model.to(device)
    print(f"[INFO] Loaded model weights from: {path}")
    return model


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


def _state_dict_mismatches(expected: Mapping[str, torch.Tensor], loaded: Mapping[str, object]) -> list[str]:
    """Describe every key missing from, unexpected in, or of the wrong shape in ``loaded``."""
    mismatches = [f"missing key {key!r}" for key in expected if key not in loaded]
    mismatches += [f"unexpected key {key!r}" for key in loaded if key not in expected]
    for key, tensor in expected.items():
        value = loaded.get(key)
        if isinstance(value, torch.Tensor) and value.shape != tensor.shape:
            mismatches.append(
                f"{key!r} has shape {tuple(value.shape)} in the checkpoint, {tuple(tensor.shape)} in the model"
            )
    return mismatches


def _wrapped_model_hint(loaded: Mapping[str, object]) -> str:
    """A hint when every key carries the prefix that nn.DataParallel or torch.compile adds."""
    prefixes = {str(key).split(".", 1)[0] for key in loaded}
    if len(prefixes) != 1 or not prefixes & {"module", "_orig_mod"}:
        return ""
    prefix = prefixes.pop()
    return (
        f" Every checkpoint key starts with '{prefix}.': it was saved from a wrapped model "
        "(nn.DataParallel or torch.compile); save the unwrapped model's state_dict instead."
    )


def _weights_unpickler_reason(error: pickle.UnpicklingError) -> str:
    """Pull PyTorch's one-line reason out of its long weights_only error message, if it has one."""
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(error), flags=re.DOTALL)
    if match is None:
        return ""
    reason = " ".join(match.group(1).split())
    first_sentence = re.split(r"(?<=\.)\s", reason, maxsplit=1)[0]  # drop torch's allowlisting advice
    return f" PyTorch's reason: {first_sentence}"
