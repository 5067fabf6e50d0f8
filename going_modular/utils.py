"""The ZTM course's ``utils.py``: save and load models, set seeds, choose a device. Saves are atomic (a crash never
leaves a half-written file); loads never unpickle code (``weights_only=True``)."""
from __future__ import annotations

import json
import os
import pickle
import random
import secrets
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union

import numpy as np
import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from going_modular.common import settings

PathLike = Union[str, Path]


class CheckpointError(ValueError):
    """A file cannot be loaded as the model's weights: not a checkpoint, unsafe, or from another model."""


def write_atomically(path: PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` atomically: ``write`` fills a temporary file beside it, which then replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder, so os.replace is an atomic rename; open "xb", as mkstemp would make the file owner-only (0600).
    temporary_path = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary_path, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary_path, path)
        return path
    except BaseException:  # even a KeyboardInterrupt: keep the earlier file, remove the temporary one
        temporary_path.unlink(missing_ok=True)
        raise


def save_model(model: torch.nn.Module, target_dir: PathLike, model_name: str) -> Path:
    """Save ``model.state_dict()`` atomically to ``target_dir / model_name`` (a ".pth" or ".pt" name)."""
    if not model_name.endswith((".pth", ".pt")):
        raise ValueError(f"model_name should end with '.pth' or '.pt', got {model_name!r}.")
    model_save_path = write_atomically(Path(target_dir) / model_name, lambda f: torch.save(model.state_dict(), f))
    print(f"[INFO] Saved model to: {settings.display_path(model_save_path)}")
    return model_save_path


def save_json(data: Mapping, path: PathLike) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically; returns the path."""
    return write_atomically(path, lambda file: file.write(json.dumps(data, indent=2).encode()))


def load_model(model: torch.nn.Module, model_path: PathLike,
               device: Optional[Union[torch.device, str]] = None) -> torch.nn.Module:
    """Load weights saved by :func:`save_model` (or by a wrapped model, or ``going_modular.train``) into ``model``,
    moved to ``device`` when one is given; left unchanged when the weights do not fit.

    Raises:
        FileNotFoundError: there is no file at ``model_path``.
        CheckpointError: not a PyTorch checkpoint, damaged, holding pickled code, or weights that do not fit ``model``.
    """
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {path} (relative paths start from {Path.cwd()}).")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint: torch.save writes a zip archive, and this file is not one (another "
            "kind of file renamed, a failed download or a copy cut short). Save or download it again.")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} contains pickled Python objects beyond tensors; loading it could run arbitrary code, so it was "
            "not loaded. If you trust it, load it with torch.load(..., weights_only=False) and re-save the model "
            "with going_modular.utils.save_model.") from error
    except (RuntimeError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path} is a damaged PyTorch checkpoint ({type(error).__name__}: {error}). "
                              "Save or download it again.") from error
    if isinstance(state_dict, dict) and {"model", "optimizer", "epoch"} <= state_dict.keys():  # a training checkpoint
        state_dict = state_dict["model"]
    if not isinstance(state_dict, dict):
        raise CheckpointError(
            f"{path} holds a {type(state_dict).__name__}, not a state dict: save models with save_model.")
    for prefix in ("module.", "_orig_mod."):  # added by DDP/DataParallel and by torch.compile
        consume_prefix_in_state_dict_if_present(state_dict, prefix)
    # load_state_dict copies every tensor that fits before it reports those that do not: keep a copy to undo it.
    original = {key: tensor.clone() for key, tensor in model.state_dict().items()}
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        model.load_state_dict(original)
        raise CheckpointError(f"The checkpoint {path} was saved from a different architecture or configuration than "
                              f"this {type(model).__name__}; build the model with the settings of the saved one. "
                              f"{error}") from None
    if device is not None:
        model.to(device)
    print(f"[INFO] Loaded model weights from: {settings.display_path(path)}")
    return model


def set_seeds(seed: int = 42) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


def get_device() -> torch.device:
    """The best available device: "cuda", then "mps" (Apple silicon), else "cpu"."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
