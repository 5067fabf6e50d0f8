"""Plots the course draws in more than one notebook, and the image helpers the other figures share."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator, NullLocator, ScalarFormatter
from PIL import Image

from going_modular.data_setup import Transform
from going_modular.engine import Results
from going_modular.common.shapes import check_divisible_by_patch_size

ImageLike = Union[Image.Image, torch.Tensor, np.ndarray]


def plot_loss_curves(results: Results, save_path: Union[str, Path, None] = None, title: Optional[str] = None):
    """Plot ``engine.train``'s training and test loss and accuracy per epoch, side by side, also as a PNG at
    ``save_path`` if given; returns the Figure. KeyError when ``results`` lacks a train/test loss/acc list."""
    if missing := {"train_loss", "test_loss", "train_acc", "test_acc"} - set(results):
        raise KeyError(f"results is missing {sorted(missing)}; pass the dictionary returned by engine.train.")
    epochs = range(1, len(results["train_loss"]) + 1)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "acc")):
        axis.plot(epochs, results[f"train_{metric}"], marker="o", label=f"train_{metric}")
        axis.plot(epochs, results[f"test_{metric}"], marker="o", label=f"test_{metric}")
        axis.set(title="Loss" if metric == "loss" else "Accuracy", xlabel="Epochs")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers: no tick at 1.5
        axis.legend(fontsize=11)
    finish_figure(figure, title)
    if save_path is not None:
        Path(save_path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(save_path, dpi=100)
    return figure


def plot_accuracy_against_photos(accuracies: Mapping[str, Mapping[int, Sequence[float]]],
                                 axis: Optional[plt.Axes] = None, title: Optional[str] = None) -> plt.Axes:
    """The paper's Figure 4 (section 4.3) in miniature: accuracy against the number of training photos on a log axis,
    one line per model through the mean over seeds, in a band of one sample standard deviation either side.
    ``accuracies``: model -> number of training photos -> the final accuracy of each seed."""
    axis = axis if axis is not None else plt.subplots(figsize=(6, 4.5))[1]
    for model, by_photos in accuracies.items():
        photos = sorted(by_photos)
        means = np.array([np.mean(by_photos[count]) for count in photos])
        spreads = np.array([np.std(by_photos[count], ddof=1) if len(by_photos[count]) > 1 else 0.0 for count in photos])
        (line,) = axis.plot(photos, means, marker="o", label=model)
        axis.fill_between(photos, means - spreads, means + spreads, color=line.get_color(), alpha=0.2)
    axis.set(xscale="log", xticks=sorted({count for by_photos in accuracies.values() for count in by_photos}),
             xlabel="training photos", ylabel="accuracy", title=title)
    axis.xaxis.set_major_formatter(ScalarFormatter())  # 28, 56, ... rather than powers of ten
    axis.xaxis.set_minor_locator(NullLocator())
    axis.legend()
    return axis


def image_to_hwc(image: ImageLike) -> np.ndarray:
    """A PIL image, a tensor [C, H, W] in [0, 1] or an array [H, W, C] (0-255 or 0-1) -> float array [H, W, C] in
    [0, 1]; ValueError unless the tensor or array is a single 3-dimensional image."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if isinstance(image, torch.Tensor):
        if image.ndim != 3:
            raise ValueError(f"Expected one image [channels, height, width], got shape {tuple(image.shape)}.")
        return image.detach().float().cpu().permute(1, 2, 0).clamp(0, 1).numpy()
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f"Expected an image array [height, width, channels], got shape {array.shape}.")
    return array / 255.0 if array.max() > 1.0 else array


def rescale_to_unit_range(values: torch.Tensor) -> torch.Tensor:
    """Stretch ``values`` linearly from their minimum (0) to their maximum (1); all zeros when they are constant."""
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else torch.zeros_like(values)


def panel_grid(count: int, ncols: int, width: float, height: float) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure with room for ``count`` panels, at most ``ncols`` a row, each width x height inches, axes hidden."""
    ncols = max(1, min(ncols, count))
    nrows = -(-count // ncols)  # rounded up
    figure, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    return figure, list(axes.flat)


def finish_figure(figure: plt.Figure, title: Optional[str]) -> plt.Figure:
    """``figure`` titled ``title`` (when given) and laid out tight."""
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_image_batch(images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], ncols: int = 8,
                     title: Optional[str] = None, panel_size: float = 1.5) -> plt.Figure:
    """Show a batch [B, C, H, W] in [0, 1] as a grid, each image titled with its class name (notebook 00), panels
    ``panel_size`` inches wide; returns the Figure. ValueError unless ``images`` is 4-D and as long as ``labels``."""
    if images.ndim != 4:
        raise ValueError(f"Expected a batch [batch, channels, height, width], got shape {tuple(images.shape)}.")
    if len(images) != len(labels):
        raise ValueError(f"Got {len(images)} images but {len(labels)} labels.")
    figure, axes = panel_grid(len(images), ncols, panel_size, panel_size + 0.25)
    for axis, image, label in zip(axes, images, labels):
        axis.imshow(image_to_hwc(image))
        axis.set_title(class_names[int(label)], fontsize=9)
    return finish_figure(figure, title)


def plot_augmentations(image: Image.Image, transform: Transform, num_samples: int = 8, ncols: int = 4,
                       mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                       title: Optional[str] = None, panel_size: float = 1.6) -> plt.Figure:
    """The photo, then ``num_samples`` outputs of a random training ``transform`` (e.g. ``train_transforms(96)``): what
    the model sees (notebook 05), its final Normalize(``mean``, ``std``) undone; ValueError for ``num_samples`` < 1."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
    mean_t, std_t = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    panels = [("original", image_to_hwc(image))]
    panels += [(f"sample {i + 1}", image_to_hwc((transform(image) * std_t + mean_t).clamp(0, 1)))
               for i in range(num_samples)]
    figure, axes = panel_grid(len(panels), ncols, panel_size, panel_size + 0.3)
    for axis, (label, picture) in zip(axes, panels):
        axis.imshow(picture)
        axis.set_title(label, fontsize=9)
    return finish_figure(figure, title)


def plot_patch_grid(image: torch.Tensor, patch_size: int, num_rows: Optional[int] = None, gap: int = 2,
                    show_numbers: bool = True, title: Optional[str] = None, figure_width: float = 8.0) -> plt.Figure:
    """Draw one image [C, H, W] cut into its P x P patches (P dividing both sides), ``gap`` white pixels apart
    (notebook 01), numbered row by row from 1 to N = H W / P^2 as the sequence x_p^1 ... x_p^N of equation 1; only
    the first ``num_rows`` (1 ... H / P) rows of patches if given. ValueError otherwise."""
    array = image_to_hwc(image)
    height, width = array.shape[:2]
    check_divisible_by_patch_size(height, width, patch_size)
    rows, cols = height // patch_size, width // patch_size
    num_rows = rows if num_rows is None else num_rows
    if not 1 <= num_rows <= rows:
        raise ValueError(f"num_rows must be between 1 and {rows} for this image, got {num_rows}.")
    step = patch_size + gap
    tiles = array[: num_rows * patch_size].reshape(num_rows, patch_size, cols, patch_size, -1)
    tiles = np.pad(tiles, ((0, 0), (0, gap), (0, 0), (0, gap), (0, 0)), constant_values=1.0)  # white after each
    canvas = tiles.reshape(num_rows * step, cols * step, -1)[: num_rows * step - gap, : cols * step - gap]
    inches_per_pixel = figure_width / canvas.shape[1]
    figure, axis = plt.subplots(figsize=(figure_width, max(1.0, canvas.shape[0] * inches_per_pixel) + 0.6))
    # The numbers scale with the patches: 5 points for the 0.55-inch patches of an 8-inch 14 x 14 grid.
    number_size = min(12.0, max(5.0, 9.0 * patch_size * inches_per_pixel))
    axis.imshow(canvas.squeeze(-1) if canvas.shape[2] == 1 else canvas, cmap="gray" if canvas.shape[2] == 1 else None)
    axis.set_xticks([col * step + patch_size / 2 for col in range(cols)], [str(col + 1) for col in range(cols)])
    axis.set_yticks([row * step + patch_size / 2 for row in range(num_rows)], [str(row + 1) for row in range(num_rows)])
    axis.set(xlabel="patch column", ylabel="patch row")
    axis.tick_params(length=0, labelsize=min(11.0, max(7.0, number_size)))
    axis.spines[:].set_visible(False)
    if show_numbers:
        for row, col in np.ndindex(num_rows, cols):
            axis.text(col * step + 1, row * step + 1, str(row * cols + col + 1), fontsize=number_size, va="top",
                      ha="left", color="white",
                      bbox=dict(boxstyle="square,pad=0.1", facecolor="black", alpha=0.55, linewidth=0))
    axis.set_title(title or f"P = {patch_size}: {num_rows} x {cols} patches shown ({num_rows * cols} of N = {rows} x "
                            f"{cols} = {rows * cols})")
    figure.tight_layout()
    return figure


def plot_feature_maps(feature_maps: torch.Tensor, indices: Sequence[int], ncols: int = 5, title: Optional[str] = None,
                      colorbar: bool = True) -> plt.Figure:
    """Show the channels ``indices`` (one or more, in 0 ... D - 1) of feature maps [D, h, w] or [1, D, h, w], e.g. x_p E
    (notebook 01), each with a colour bar of its own range (``colorbar``); returns the Figure. ValueError otherwise."""
    if feature_maps.ndim == 4 and feature_maps.shape[0] == 1:
        feature_maps = feature_maps[0]
    if feature_maps.ndim != 3:
        raise ValueError(f"Expected feature maps [D, h, w] or [1, D, h, w], got shape {tuple(feature_maps.shape)}.")
    indices = [int(index) for index in indices]
    if not indices:
        raise ValueError("indices is empty; name at least one channel to show.")
    depth = feature_maps.shape[0]
    if bad := [index for index in indices if not 0 <= index < depth]:
        raise ValueError(f"Channel indices {bad} are out of range for {depth} feature maps (0 ... {depth - 1}).")
    figure, axes = panel_grid(len(indices), ncols, 2.7 if colorbar else 2.2, 2.3)
    for axis, index in zip(axes, indices):
        shown = axis.imshow(feature_maps[index].detach().cpu().float().numpy(), cmap="viridis")
        axis.set_title(f"channel {index}", fontsize=9)
        if colorbar:
            figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
    return finish_figure(figure, title)
