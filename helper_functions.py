"""The ZTM course's ``helper_functions``: ``from helper_functions import ...``.

Functions the package has are re-exported from it (one implementation of each thing); the rest are the
course's small helpers that belong to no module of the package.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import torch

from going_modular import predictions
from going_modular.common import settings
from going_modular.common.shapes import ImageSize
from going_modular.data_setup import Transform, download_data
from going_modular.figures.attention import plot_attention_heads
from going_modular.figures.plotting import plot_feature_maps, plot_image_batch, plot_loss_curves, plot_patch_grid
from going_modular.utils import PathLike, set_seeds

__all__ = [
    "accuracy_fn", "download_data", "plot_attention_heads", "plot_feature_maps", "plot_image_batch",
    "plot_loss_curves", "plot_patch_grid", "pred_and_plot_image", "print_train_time", "set_seeds", "walk_through_dir",
]


def walk_through_dir(dir_path: Union[str, Path]) -> None:
    """Print how many folders and images each folder under ``dir_path`` holds.

    Raises:
        FileNotFoundError: ``dir_path`` does not exist.
    """
    if not Path(dir_path).is_dir():
        raise FileNotFoundError(f"{dir_path} is not a folder. Download the data first (download_data).")
    for current, folders, files in sorted(os.walk(dir_path)):
        print(f"There are {len(folders)} directories and {len(files)} images in '{settings.display_path(current)}'.")


def accuracy_fn(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """Percentage of predictions that equal the labels, e.g. 75.0 for 3 right out of 4.

    Raises:
        ValueError: the two tensors have different numbers of elements, or are empty.
    """
    if y_true.numel() != y_pred.numel() or y_true.numel() == 0:
        raise ValueError(f"Expected two non-empty tensors of equal size, got {y_true.numel()} and {y_pred.numel()}.")
    return torch.eq(y_true, y_pred).sum().item() / y_true.numel() * 100


def print_train_time(start: float, end: float, device: Optional[Union[str, torch.device]] = None) -> float:
    """Print and return the seconds between ``start`` and ``end`` (e.g. two ``timeit.default_timer()`` calls)."""
    total_time = end - start
    print(f"\nTrain time on {device}: {total_time:.3f} seconds")
    return total_time


def pred_and_plot_image(
    model: torch.nn.Module,
    image_path: PathLike,
    class_names: Optional[Sequence[str]] = None,
    transform: Optional[Transform] = None,
    device: Optional[Union[torch.device, str]] = None,
    *,
    image_size: ImageSize = (224, 224),
) -> tuple[str, float]:
    """``going_modular.predictions.pred_and_plot_image`` with the argument order of ZTM's helper.

    ZTM's ``helper_functions`` takes ``(model, image_path, class_names)``, its ``going_modular``
    ``(model, class_names, image_path)``: code copied from either place runs unchanged.

    Raises:
        TypeError: ``image_path`` is not a path (the arguments came in the package's order).
        ValueError: ``class_names`` is None (ZTM's default), or as the package's function.
    """
    if not isinstance(image_path, (str, os.PathLike)):
        raise TypeError(
            f"helper_functions.pred_and_plot_image takes (model, image_path, class_names), ZTM's helper order, "
            f"but image_path is a {type(image_path).__name__}. For the order (model, class_names, image_path) "
            "use going_modular.predictions.pred_and_plot_image."
        )
    if class_names is None:
        raise ValueError(
            "pred_and_plot_image needs class_names, the class names in the order of the model's outputs "
            "(for example the third value returned by data_setup.create_dataloaders)."
        )
    return predictions.pred_and_plot_image(
        model, class_names, image_path, image_size=image_size, transform=transform, device=device
    )
