"""Plots the course draws more than once: loss and accuracy curves."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import matplotlib.pyplot as plt

from going_modular.engine import Results


def plot_loss_curves(results: Results, save_path: Union[str, Path, None] = None, title: Optional[str] = None):
    """Plot training and test loss and accuracy per epoch, side by side.

    Args:
        results: the dictionary returned by ``engine.train``.
        save_path: if given, also write the figure there as a PNG (parent folders are created).
        title: an optional title over both panels (e.g. the device, epochs and run mode).

    Returns:
        The matplotlib Figure.

    Raises:
        KeyError: ``results`` lacks one of "train_loss", "test_loss", "train_acc", "test_acc".
    """
    missing = {"train_loss", "test_loss", "train_acc", "test_acc"} - set(results)
    if missing:
        raise KeyError(f"results is missing {sorted(missing)}; pass the dictionary returned by engine.train.")
    epochs = range(1, len(results["train_loss"]) + 1)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "acc")):
        axis.plot(epochs, results[f"train_{metric}"], marker="o", label=f"train_{metric}")
        axis.plot(epochs, results[f"test_{metric}"], marker="o", label=f"test_{metric}")
        axis.set_title("Loss" if metric == "loss" else "Accuracy")
        axis.set_xlabel("Epochs")
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    if save_path is not None:
        save_path = Path(save_path)
        save_path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(save_path, dpi=100)
    return figure
