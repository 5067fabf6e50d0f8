"""Where the course keeps its data and pretrained weights, and whether this is a reduced run.

Each decision is made here, once, and read by the notebooks, the scripts and the tests alike.

Data directory (``get_data_dir``):
    1. the environment variable ``VIT_COURSE_DATA_DIR`` when it is set;
    2. otherwise ``<repository>/data`` when going_modular is imported from a checkout of the
       repository (a notebook in ``notebooks/``, a script at the root, ``pip install -e .``);
    3. otherwise ``./data`` under the current working directory (for example ``/content/data``
       in Colab after a plain ``pip install`` of the repository).

Weights directory (``get_weights_dir``), where pretrained weights are kept (never committed):
    1. the environment variable ``VIT_COURSE_WEIGHTS_DIR`` when it is set;
    2. otherwise ``<repository>/weights`` in a checkout of the repository;
    3. otherwise ``./weights`` under the current working directory.
    ``pretrained.load_pretrained_vit`` downloads there when the file is missing (in Colab, say).

Reduced run (``is_reduced_run``):
    The test suite sets ``VIT_COURSE_REDUCED=1`` so that the notebooks train on a few batches for
    an epoch or two. It changes how much work is done, never which code runs. A person running a
    notebook gets the full run. A reduced run writes figures and models (``get_images_dir``,
    ``get_models_dir``) to a temporary folder, never over those of a full run.
"""
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

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPOSITORY_ROOT = _PACKAGE_DIR.parent.parent


def get_repository_root() -> Path | None:
    """Return the root of the course repository, or None when going_modular is installed elsewhere."""
    if (_REPOSITORY_ROOT / "pyproject.toml").is_file() and (_REPOSITORY_ROOT / "helper_functions.py").is_file():
        return _REPOSITORY_ROOT
    return None


def get_data_dir() -> Path:
    """Return the directory that holds the course's datasets (see the module docstring for the order)."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    root = get_repository_root()
    if root is not None:
        return root / "data"
    return Path.cwd() / "data"


def get_weights_dir() -> Path:
    """Return the folder that holds pretrained weights files (see the module docstring for the order)."""
    override = os.environ.get(WEIGHTS_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    root = get_repository_root()
    if root is not None:
        return root / "weights"
    return Path.cwd() / "weights"


def get_images_dir() -> Path:
    """Return the folder the notebooks write their figures into: ``<repository>/images`` or ``./images``."""
    return _folder("images")


def get_models_dir() -> Path:
    """Return the folder trained models are saved in (never committed): ``<repository>/models`` or ``./models``.

    Notebooks 05 and 06 save there and notebook 07 loads from there.
    """
    return _folder("models")


def _folder(name: str) -> Path:
    # A reduced run (pytest) writes its figures and models to a temporary folder, so that it never
    # overwrites the committed figures or a model saved by a full run.
    if is_reduced_run():
        base = Path(tempfile.gettempdir()) / "vit_course_reduced_run"
    else:
        root = get_repository_root()
        base = root if root is not None else Path.cwd()
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def display_path(path: Union[str, Path]) -> str:
    """``path`` as messages and printed outputs show it: relative to the repository when it lies inside.

    So a notebook's output reads "data/pizza_steak_sushi", not the folders of the machine that ran it;
    a path outside the repository is shown as it is.
    """
    root = get_repository_root()
    if root is not None:
        try:
            return str(Path(path).resolve().relative_to(root))
        except ValueError:
            pass
    return str(path)


def is_reduced_run() -> bool:
    """Return True when ``VIT_COURSE_REDUCED`` asks for a reduced run ("1", "true", "yes" or "on")."""
    return os.environ.get(REDUCED_RUN_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def describe_run(device: Union[str, "torch.device"]) -> str:
    """One line for a notebook's output saying what produced it: device, torch version, run mode."""
    import torch  # imported here so that settings stays importable without torch

    mode = f"reduced run ({REDUCED_RUN_ENV}=1, as under pytest)" if is_reduced_run() else "full run"
    return f"device: {device} | torch {torch.__version__} | {mode}"
