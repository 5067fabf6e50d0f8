"""Making predictions on image files with a trained classifier, and plotting them.

The ZTM course's ``pred_and_plot_image``, plus ``predict`` for many images in batches and
``plot_predictions`` to show them as a grid, and a confusion matrix (notebooks 06 and 07). Images are opened with
``data_setup.load_image``, so EXIF-rotated photos, RGBA and grayscale files all work.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, Optional, Union

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from going_modular.data_setup import PathLike, Transform, load_image, manual_transforms
from going_modular.common.shapes import ImageSize


class Prediction(NamedTuple):
    """One image's prediction: the file, the most likely class and its probability."""

    image_path: Path
    pred_class: str
    pred_prob: float


def pred_and_plot_image(
    model: torch.nn.Module,
    class_names: Sequence[str],
    image_path: PathLike,
    image_size: ImageSize = (224, 224),
    transform: Optional[Transform] = None,
    device: Optional[Union[torch.device, str]] = None,
) -> tuple[str, float]:
    """Predict the class of one image file and plot the image with the prediction as its title.

    The figure is left open as the current matplotlib figure: a notebook shows it inline; in a
    script call ``plt.show()`` (or ``plt.savefig``).

    Args:
        model: a trained classifier whose output is ``[batch, len(class_names)]`` logits.
        class_names: the class names, in the order of the model's outputs.
        image_path: path to the image file.
        image_size: (height, width) used by the default transform (an int means a square).
        transform: pass the transform the model was trained with (for a pretrained torchvision ViT,
            ``weights.transforms()``). When None: the course's transform for its from-scratch ViT,
            ``data_setup.manual_transforms(image_size)`` (resize, then ``ToTensor()``).
        device: where to run the model (it is moved there). When None: the device of the model's
            parameters.

    Returns:
        (predicted class name, its probability).

    Raises:
        FileNotFoundError: there is no file at ``image_path``.
        ValueError: the file is not a readable image (the message names it), the model's number
            of output logits differs from ``len(class_names)``, or ``image_size`` is not one positive
            int or a pair of them.
    """
    image = load_image(image_path)
    image_tensor = _resolve_transform(transform, image_size)(image)
    probabilities = _predict_probabilities(model, image_tensor.unsqueeze(0), class_names, device)
    pred_prob, pred_label = probabilities[0].max(dim=0)
    pred_class, pred_prob_value = class_names[int(pred_label)], float(pred_prob)

    plt.figure()
    plt.imshow(image)
    plt.title(f"Pred: {pred_class} | Prob: {pred_prob_value:.3f}")
    plt.axis("off")
    return pred_class, pred_prob_value


def predict(
    model: torch.nn.Module,
    image_paths: Iterable[PathLike],
    class_names: Sequence[str],
    transform: Optional[Transform] = None,
    image_size: ImageSize = (224, 224),
    batch_size: int = 32,
    device: Optional[Union[torch.device, str]] = None,
) -> list[Prediction]:
    """Predict the class of many image files, ``batch_size`` images at a time.

    Args:
        model: a trained classifier whose output is ``[batch, len(class_names)]`` logits.
        image_paths: the image files, in the order the predictions are returned.
        class_names: the class names, in the order of the model's outputs.
        transform: pass the transform the model was trained with; it must give every image the
            same shape. When None: ``data_setup.manual_transforms(image_size)`` (as in
            :func:`pred_and_plot_image`).
        image_size: (height, width) used by the default transform (an int means a square).
        batch_size: how many images go through the model at once.
        device: where to run the model (it is moved there). When None: the device of the model's
            parameters.

    Returns:
        One :class:`Prediction` per image, in input order; an empty list for no images.

    Raises:
        FileNotFoundError: an image file does not exist.
        ValueError: ``batch_size`` is below 1, a file is not a readable image (the message names
            it), the transform gave images of different shapes, the model's number of output
            logits differs from ``len(class_names)``, or ``image_size`` is not one positive int or
            a pair of them.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size should be at least 1, got {batch_size}.")
    paths = [Path(image_path) for image_path in image_paths]
    resolved_transform = _resolve_transform(transform, image_size)
    predictions: list[Prediction] = []
    for start in range(0, len(paths), batch_size):
        batch_paths = paths[start : start + batch_size]
        image_tensors = [resolved_transform(load_image(path)) for path in batch_paths]
        shapes = {tuple(tensor.shape) for tensor in image_tensors}
        if len(shapes) > 1:
            raise ValueError(
                f"The transform gave images of different shapes {sorted(shapes)}; use a transform that "
                "resizes every image to the same size (the one the model was trained with)."
            )
        probabilities = _predict_probabilities(model, torch.stack(image_tensors), class_names, device)
        pred_probs, pred_labels = probabilities.max(dim=1)
        predictions += [
            Prediction(path, class_names[int(label)], float(prob))
            for path, label, prob in zip(batch_paths, pred_labels, pred_probs)
        ]
    return predictions


CORRECT_COLOUR, WRONG_COLOUR = "green", "red"


def plot_predictions(
    predictions: Sequence[Prediction],
    true_classes: Optional[Sequence[str]] = None,
    ncols: int = 4,
    title: Optional[str] = None,
    panel_size: float = 2.2,
    max_pixels: int = 224,
) -> Figure:
    """Show predictions as a grid of photos, each titled "true: X" over "pred: Y (p)", green if right, red if wrong.

    Each title takes two lines and each row is given room for them, so titles never overlap each other,
    the photos above them or the figure's title, whatever the number of photos.

    Args:
        predictions: from :func:`predict`, in the order they are drawn (row by row).
        true_classes: the true class of each photo. When None: the name of the folder holding each
            file (the ``train/pizza/xyz.jpg`` layout of the course's data).
        ncols: photos per row (fewer when there are fewer photos).
        title: an optional title over the grid.
        panel_size: width of each photo's panel in inches.
        max_pixels: photos are shrunk to at most this many pixels a side before drawing, which keeps
            notebooks light; the model saw its own transform of the full photo.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: there are no predictions, ``ncols`` is below 1, or ``true_classes`` has another
            length than ``predictions`` (the message names both).
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
    figure, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size * ncols, (panel_size + 0.5) * nrows + (0.4 if title else 0.0)),
        squeeze=False, layout="constrained",
    )
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= len(predictions):
            continue
        prediction, true_class = predictions[index], true_classes[index]
        image = load_image(prediction.image_path)
        image.thumbnail((max_pixels, max_pixels))
        axis.imshow(image)
        colour = CORRECT_COLOUR if prediction.pred_class == true_class else WRONG_COLOUR
        axis.set_title(
            f"true: {true_class}\npred: {prediction.pred_class} ({prediction.pred_prob:.2f})", fontsize=9, color=colour
        )
    if title:
        figure.suptitle(title)
    return figure


def confusion_matrix(
    true_labels: Union[torch.Tensor, Sequence[int]], pred_labels: Union[torch.Tensor, Sequence[int]], num_classes: int
) -> torch.Tensor:
    """Count how often each true class was predicted as each class.

    Args:
        true_labels: the true class index of each example.
        pred_labels: the predicted class index of each example, in the same order.
        num_classes: K, the number of classes.

    Returns:
        An int64 tensor [K, K]: row = true class, column = predicted class; the diagonal counts the right answers.

    Raises:
        ValueError: the two have different lengths, or a label is outside 0 .. K - 1 (the message names both).
    """
    true_labels, pred_labels = torch.as_tensor(true_labels).long().flatten(), torch.as_tensor(pred_labels).long().flatten()
    if len(true_labels) != len(pred_labels):
        raise ValueError(f"Got {len(true_labels)} true labels but {len(pred_labels)} predicted labels.")
    for name, labels in (("true", true_labels), ("predicted", pred_labels)):
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"A {name} label is outside 0 .. {num_classes - 1}: {sorted(set(labels.tolist()))}.")
    counts = torch.bincount(true_labels * num_classes + pred_labels, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def plot_confusion_matrix(matrix: torch.Tensor, class_names: Sequence[str], title: Optional[str] = None) -> Figure:
    """Draw a confusion matrix (from :func:`confusion_matrix`) with the count written in every cell.

    Args:
        matrix: [K, K] counts, row = true class, column = predicted class.
        class_names: the K class names.
        title: an optional title; by default "Confusion matrix (N photos, accuracy A)".

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: ``matrix`` is not [K, K] for the K class names.
    """
    size = len(class_names)
    matrix = torch.as_tensor(matrix).cpu()
    if tuple(matrix.shape) != (size, size):
        raise ValueError(f"Expected a [{size}, {size}] matrix for {size} class names, got {tuple(matrix.shape)}.")
    total = int(matrix.sum())
    accuracy = float(matrix.diagonal().sum()) / total if total else float("nan")
    figure, axis = plt.subplots(figsize=(1.2 * size + 1.6, 1.1 * size + 1.2), layout="constrained")
    axis.imshow(matrix.numpy(), cmap="Blues", vmin=0)
    for row in range(size):
        for column in range(size):
            count = int(matrix[row, column])
            dark = count > 0.5 * float(matrix.max())
            axis.text(column, row, str(count), ha="center", va="center", color="white" if dark else "black")
    axis.set_xticks(range(size), class_names)
    axis.set_yticks(range(size), class_names)
    axis.set(xlabel="predicted class", ylabel="true class")
    axis.set_title(title if title is not None else f"Confusion matrix ({total} photos, accuracy {accuracy:.3f})")
    return figure


def _resolve_transform(transform: Optional[Transform], image_size: ImageSize) -> Transform:
    """Return ``transform``, or the course's ``manual_transforms(image_size)`` when it is None."""
    return transform if transform is not None else manual_transforms(image_size)


def _predict_probabilities(
    model: torch.nn.Module,
    images: torch.Tensor,
    class_names: Sequence[str],
    device: Optional[Union[torch.device, str]],
) -> torch.Tensor:
    """Run ``model`` in eval mode on a batch of images and return softmax probabilities on the CPU.

    The model's train/eval mode is restored afterwards, so predicting mid-training is harmless.
    """
    if device is None:
        device = _model_device(model)
    else:
        model.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = model(images.to(device))
    finally:
        model.train(was_training)
    if logits.ndim != 2 or logits.shape[1] != len(class_names):
        raise ValueError(
            f"The model gives {logits.shape[-1]} output logits per image (output shape "
            f"{tuple(logits.shape)}), but {len(class_names)} class_names were given: {list(class_names)}. "
            "Pass the class names the model was trained with."
        )
    return torch.softmax(logits, dim=1).cpu()


def _model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model with neither."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")
