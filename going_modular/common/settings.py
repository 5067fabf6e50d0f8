"""Where the course keeps data, weights, figures and models (in the repository when going_modular is imported from a
checkout, else under the working directory; ``$VIT_COURSE_DATA_DIR`` and ``$VIT_COURSE_WEIGHTS_DIR`` move the first
two), and whether this is a reduced run (``VIT_COURSE_REDUCED=1``, set by the tests: less work, the same code)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import torch

DATA_DIR_ENV = "VIT_COURSE_DATA_DIR"
REDUCED_RUN_ENV = "VIT_COURSE_REDUCED"
WEIGHTS_DIR_ENV = "VIT_COURSE_WEIGHTS_DIR"

_REPOSITORY_ROOT = Path(__file__).resolve().parents[2]  # <root>/going_modular/common/settings.py


def get_repository_root() -> Path | None:
    """The root of the course repository, or None when going_modular is installed elsewhere."""
    markers = ("pyproject.toml", "helper_functions.py")  # files that only a checkout has
    return _REPOSITORY_ROOT if all((_REPOSITORY_ROOT / name).is_file() for name in markers) else None


def _override_or_default(env: str, name: str) -> Path:
    override = os.environ.get(env)
    return Path(override).expanduser().resolve() if override else (get_repository_root() or Path.cwd()) / name


def get_data_dir() -> Path:
    """The folder of the course's datasets: ``$VIT_COURSE_DATA_DIR``, else ``<repository or cwd>/data``."""
    return _override_or_default(DATA_DIR_ENV, "data")


def get_weights_dir() -> Path:
    """The folder of pretrained weights (never committed): ``$VIT_COURSE_WEIGHTS_DIR``, else ``.../weights``."""
    return _override_or_default(WEIGHTS_DIR_ENV, "weights")


def get_images_dir() -> Path:
    """The folder the notebooks write their figures into (created): ``<repository or cwd>/images``."""
    return _output_folder("images")


def get_models_dir() -> Path:
    """The folder trained models are saved in (created, never committed): ``<repository or cwd>/models``."""
    return _output_folder("models")


def _output_folder(name: str) -> Path:
    # A reduced run (pytest) must never overwrite the committed figures or a model saved by a full run.
    reduced = Path(tempfile.gettempdir()) / "vit_course_reduced_run"
    folder = (reduced if is_reduced_run() else get_repository_root() or Path.cwd()) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def display_path(path: Union[str, Path]) -> str:
    """``path`` relative to the repository when it lies inside, so outputs do not show the machine's folders."""
    root = get_repository_root()
    if root is not None and Path(path).resolve().is_relative_to(root):
        return str(Path(path).resolve().relative_to(root))
    return str(path)


def is_reduced_run() -> bool:
    """Whether ``VIT_COURSE_REDUCED`` is "1", "true", "yes" or "on"."""
    return os.environ.get(REDUCED_RUN_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def describe_run(device: Union[str, "torch.device"]) -> str:
    """One line for a notebook's output saying what produced it: device, torch version, run mode."""
    import torch  # here, so that settings stays importable without torch
    mode = f"reduced run ({REDUCED_RUN_ENV}=1, as under pytest)" if is_reduced_run() else "full run"
    return f"device: {device} | torch {torch.__version__} | {mode}"
