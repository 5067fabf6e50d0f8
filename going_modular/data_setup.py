"""Getting image data into PyTorch: downloading the course dataset, loading images, dataloaders."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision import transforms

PathLike = Union[str, Path]


def load_image(image_path: PathLike) -> Image.Image:
    """Open an image file as an upright RGB PIL image.

    EXIF orientation is applied (phone photos are often stored sideways), and grayscale, RGBA and
    palette images are converted to RGB, so every image reaches the model with 3 channels.

    Args:
        image_path: path to an image file.

    Returns:
        The image in RGB mode.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not an image PIL can read (the message names the file).
    """
    path = Path(image_path)
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {path}. Check the path (relative paths start from {Path.cwd()}).")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path} is not an image that PIL can read ({error}). Remove or replace this file.") from error


def manual_transforms(image_size: int = 224) -> transforms.Compose:
    """The course's transform for a ViT trained from scratch: resize to image_size x image_size, then to a tensor.

    Args:
        image_size: height and width in pixels (224 in Table 3 of the paper).

    Returns:
        A transform from a PIL image to a float tensor [3, image_size, image_size] in [0, 1].
    """
    return transforms.Compose([transforms.Resize((image_size, image_size)), transforms.ToTensor()])
