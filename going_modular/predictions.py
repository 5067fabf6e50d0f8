"""Predict on image files with a trained classifier and plot the results (notebooks 06 and 07), as ZTM's course does."""
from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, Optional, Union

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from going_modular.common.shapes import ImageSize
from going_modular.data_setup import PathLike, Transform, load_image, manual_transforms

Device = Optional[Union[torch.device, str]]


class Prediction(NamedTuple):
    """One image's prediction: the file, the most likely class and its probability."""
    image_path: Path
    pred_class: str
    pred_prob: float


def pred_and_plot_image(model: torch.nn.Module, class_names: Sequence[str], image_path: PathLike,
                        image_size: ImageSize = (224, 224), transform: Optional[Transform] = None,
                        device: Device = None) -> tuple[str, float]:
    """Predict one image file's class and plot the image titled with it, in the current matplotlib figure; returns
    (class, probability). Arguments and errors as :func:`predict`'s; TypeError for the arguments in the order of
    ``helper_functions.pred_and_plot_image`` (model, image_path, class_names)."""
    if isinstance(class_names, (str, os.PathLike)):
        raise TypeError(f"predictions.pred_and_plot_image takes (model, class_names, image_path), the ZTM "
                        f"going_modular order, but class_names is the path {str(class_names)!r}. Swap the two, or use "
                        f"helper_functions.pred_and_plot_image, which takes (model, image_path, class_names).")
    (prediction,) = predict(model, [image_path], class_names, transform, image_size, device=device)
    plt.figure()
    plt.imshow(load_image(image_path))
    plt.title(f"Pred: {prediction.pred_class} | Prob: {prediction.pred_prob:.3f}")
    plt.axis("off")
    return prediction.pred_class, prediction.pred_prob


def predict(model: torch.nn.Module, image_paths: Iterable[PathLike], class_names: Sequence[str],
            transform: Optional[Transform] = None, image_size: ImageSize = (224, 224), batch_size: int = 32,
            device: Device = None) -> list[Prediction]:
    """Predict the class of each image file, ``batch_size`` at a time, in input order, from ``model``'s logits
    [batch, len(class_names)] (its train/eval mode kept) on ``device`` (None: where its parameters are). ``transform``
    None: the model's own (``model.preprocessing``, set by ``pretrained``), else ``manual_transforms(image_size)``.

    Raises:
        FileNotFoundError: an image file does not exist.
        ValueError: a file is not an image, the transform gives images of different shapes, the model's
            number of logits is not ``len(class_names)``, ``batch_size`` < 1, or ``image_size`` is bad.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size should be at least 1, got {batch_size}.")
    if transform is None:
        transform = getattr(model, "preprocessing", None) or manual_transforms(image_size)
    if device is None:
        first = next(itertools.chain(model.parameters(), model.buffers()), None)
        device = first.device if first is not None else "cpu"
    paths = [Path(image_path) for image_path in image_paths]
    predictions: list[Prediction] = []
    was_training = model.training
    for start in range(0, len(paths), batch_size):
        batch_paths = paths[start : start + batch_size]
        try:
            images = torch.stack([transform(load_image(path)) for path in batch_paths])
        except RuntimeError as error:
            raise ValueError(f"The transform gave images of different shapes ({error}); use one that resizes "
                             "every image to the size the model was trained with.") from None
        try:
            with torch.inference_mode():
                logits = model.to(device).eval()(images.to(device))
        finally:
            model.train(was_training)  # so predicting mid-training is harmless
        if logits.ndim != 2 or logits.shape[1] != len(class_names):
            raise ValueError(f"The model gives {logits.shape[-1]} output logits per image (output shape "
                             f"{tuple(logits.shape)}), but {len(class_names)} class_names were given: "
                             f"{list(class_names)}. Pass those the model was trained with.")
        pred_probs, pred_labels = torch.softmax(logits, dim=1).cpu().max(dim=1)
        predictions += [Prediction(path, class_names[int(label)], float(prob))
                        for path, label, prob in zip(batch_paths, pred_labels, pred_probs)]
    return predictions


def plot_predictions(predictions: Sequence[Prediction], true_classes: Optional[Sequence[str]] = None, ncols: int = 4,
                     title: Optional[str] = None, panel_size: float = 2.2, max_pixels: int = 224) -> Figure:
    """Show predictions as a grid of photos titled "true: X" over "pred: Y (p)", green if right, red if wrong, in
    panels ``panel_size`` inches wide, each photo shrunk to ``max_pixels`` a side at most (to keep notebooks light).
    ``true_classes`` None: the folder holding each photo (the course's ``train/pizza/x.jpg`` layout).

    Raises:
        ValueError: no predictions, ``ncols`` < 1, or ``true_classes`` of another length.
        FileNotFoundError: a photo's file does not exist.
    """
    if not predictions:
        raise ValueError("There are no predictions to plot.")
    if ncols < 1:
        raise ValueError(f"ncols should be at least 1, got {ncols}.")
    if true_classes is None:
        true_classes = [Path(prediction.image_path).parent.name for prediction in predictions]
    elif len(true_classes) != len(predictions):
        raise ValueError(f"Got {len(predictions)} predictions but {len(true_classes)} true_classes.")
    ncols = min(ncols, len(predictions))
    nrows = math.ceil(len(predictions) / ncols)
    figure, axes = plt.subplots(nrows, ncols, squeeze=False, layout="constrained",
                                figsize=(panel_size * ncols, (panel_size + 0.5) * nrows + (0.4 if title else 0.0)))
    for axis in axes.flat:
        axis.axis("off")
    for axis, prediction, true_class in zip(axes.flat, predictions, true_classes):
        image = load_image(prediction.image_path)
        image.thumbnail((max_pixels, max_pixels))
        axis.imshow(image)
        axis.set_title(f"true: {true_class}\npred: {prediction.pred_class} ({prediction.pred_prob:.2f})",
                       fontsize=9, color="green" if prediction.pred_class == true_class else "red")
    if title:
        figure.suptitle(title)
    return figure


def confusion_matrix(true_labels: Union[torch.Tensor, Sequence[int]], pred_labels: Union[torch.Tensor, Sequence[int]],
                     num_classes: int) -> torch.Tensor:
    """An int64 [K, K] count of each true class (row) predicted as each class (column); ValueError when the two
    differ in length or a label is outside 0 .. K - 1."""
    true_labels, pred_labels = (torch.as_tensor(labels).long().flatten() for labels in (true_labels, pred_labels))
    if len(true_labels) != len(pred_labels):
        raise ValueError(f"Got {len(true_labels)} true labels but {len(pred_labels)} predicted labels.")
    for name, labels in (("true", true_labels), ("predicted", pred_labels)):
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"A {name} label is outside 0 .. {num_classes - 1}: {sorted(set(labels.tolist()))}.")
    counts = torch.bincount(true_labels * num_classes + pred_labels, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def plot_confusion_matrix(matrix: torch.Tensor, class_names: Sequence[str], title: Optional[str] = None) -> Figure:
    """Draw a [K, K] confusion matrix with every count in its cell (default title: photo count and accuracy);
    ValueError unless ``matrix`` is [K, K] for the K class names."""
    size = len(class_names)
    matrix = torch.as_tensor(matrix).cpu()
    if tuple(matrix.shape) != (size, size):
        raise ValueError(f"Expected a [{size}, {size}] matrix for {size} class names, got {tuple(matrix.shape)}.")
    total = int(matrix.sum())
    accuracy = float(matrix.diagonal().sum()) / total if total else float("nan")
    figure, axis = plt.subplots(figsize=(1.2 * size + 1.6, 1.1 * size + 1.2), layout="constrained")
    axis.imshow(matrix.numpy(), cmap="Blues", vmin=0)
    for (row, column), count in zip(itertools.product(range(size), repeat=2), matrix.flatten().tolist()):
        dark = count > 0.5 * float(matrix.max())
        axis.text(column, row, str(count), ha="center", va="center", color="white" if dark else "black")
    axis.set_xticks(range(size), class_names)
    axis.set_yticks(range(size), class_names)
    axis.set(xlabel="predicted class", ylabel="true class")
    axis.set_title(title if title is not None else f"Confusion matrix ({total} photos, accuracy {accuracy:.3f})")
    return figure
