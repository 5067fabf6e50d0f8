"""The course's helper functions, importable as ``from helper_functions import ...``.

Several of them are the same functions as in ``going_modular`` and are re-exported from there, so
there is one implementation of each thing:

    set_seeds                  -> going_modular.utils
    download_data              -> going_modular.data_setup
    plot_loss_curves, plot_image_batch, plot_patch_grid, plot_feature_maps
                               -> going_modular.plotting
    plot_attention_heads       -> going_modular.attention
    pred_and_plot_image        -> going_modular.predictions

The rest are small helpers the notebooks use that belong to no module of the package.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch

from going_modular.attention import plot_attention_heads
from going_modular.data_setup import download_data
from going_modular.plotting import plot_feature_maps, plot_image_batch, plot_loss_curves, plot_patch_grid
from going_modular.predictions import pred_and_plot_image
from going_modular.utils import set_seeds

__all__ = [
    "accuracy_fn",
    "download_data",
    "plot_attention_heads",
    "plot_feature_maps",
    "plot_image_batch",
    "plot_loss_curves",
    "plot_patch_grid",
    "pred_and_plot_image",
    "print_train_time",
    "set_seeds",
    "walk_through_dir",
]


def walk_through_dir(dir_path: Union[str, Path]) -> None:
    """Print how many folders and images each folder under ``dir_path`` holds.

    Raises:
        FileNotFoundError: ``dir_path`` does not exist.
    """
    if not Path(dir_path).is_dir():
        raise FileNotFoundError(f"{dir_path} is not a folder. Download the data first (download_data).")
    for current, folders, files in sorted(os.walk(dir_path)):
        print(f"There are {len(folders)} directories and {len(files)} images in '{current}'.")


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
