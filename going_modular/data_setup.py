"""Getting image data into PyTorch as ZTM's "PyTorch Paper Replicating" (section 1) does: download FoodVision Mini,
then transform and load the photos of its ``train/`` and ``test/`` folders."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Callable, Optional
from urllib.parse import urlparse

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import DataLoader, Sampler
from torchvision import datasets, transforms

from going_modular.common import settings
from going_modular.common.download import DataError, DownloadError, download_file, extract_zip, fetch  # noqa: F401
from going_modular.common.shapes import ImageSize, to_pair
from going_modular.utils import PathLike

Transform = Callable[[Image.Image], torch.Tensor]

PIZZA_STEAK_SUSHI_URL = "https://github.com/mrdbourke/pytorch-deep-learning/raw/main/data/pizza_steak_sushi.zip"
PIZZA_STEAK_SUSHI_20_PERCENT_URL = PIZZA_STEAK_SUSHI_URL.replace(".zip", "_20_percent.zip")
CUSTOM_IMAGE_URL = "https://raw.githubusercontent.com/mrdbourke/pytorch-deep-learning/main/images/04-pizza-dad.jpeg"


def _default_num_workers() -> int:
    # Windows and macOS start DataLoader workers with "spawn", which re-imports __main__ in every worker;
    # from a notebook that fails (or hangs), so load in the main process there. Linux and Colab fork.
    return 0 if sys.platform.startswith(("win", "darwin")) else min(4, os.cpu_count() or 1)


NUM_WORKERS = _default_num_workers()


def download_data(source: str, destination: str, *, sha256: Optional[str] = None, remove_source: bool = True,
                  data_dir: Optional[PathLike] = None) -> Path:
    """Download a zip archive and unzip it into ``data_dir / destination`` (default ``settings.get_data_dir()``),
    unless that folder has content. Built in a temporary folder beside it and renamed into place, so a failed call
    leaves nothing; a single top-level folder named ``destination`` is unwrapped. ``sha256``: the zip's hex digest
    (None: unchecked); ``remove_source=False`` keeps the zip at ``data_dir / <zip name>``.

    Raises:
        ConnectionError: offline, a timeout, or the download broke off (the message says how to get the data by hand).
        DownloadError: the server answered with an HTTP error status.
        DataError: the download is not a readable zip, its checksum differs, or a member would land outside.
        FileExistsError: ``data_dir / destination`` exists and is not a folder.
    """
    data_dir = Path(data_dir) if data_dir is not None else settings.get_data_dir()
    target = data_dir / destination
    if target.is_dir() and any(target.iterdir()):
        print(f"[INFO] {settings.display_path(target)} already exists, skipping download.")
        return target
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder. Move it away, then download again.")
    manual_hint = (f"download {source} with a browser and unzip it so that "
                   f"{settings.display_path(target)}/train/<class name>/<image> "
                   f"exists, or set {settings.DATA_DIR_ENV} to a folder that already holds {destination}/")
    print(f"[INFO] Downloading {source} into {settings.display_path(target)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as scratch:  # same disk: a rename
        zip_path = Path(scratch) / (PurePosixPath(urlparse(source).path).name or f"{destination}.zip")
        extracted = Path(scratch) / "extracted"
        fetch(source, zip_path, sha256=sha256, manual_hint=manual_hint)
        extract_zip(zip_path, extracted, source)
        top_level = list(extracted.iterdir())
        if len(top_level) == 1 and top_level[0].is_dir() and top_level[0].name == target.name:
            extracted = top_level[0]
        if target.is_dir():
            target.rmdir()  # empty (checked above); os.replace cannot overwrite a folder on Windows
        os.replace(extracted, target)
        if not remove_source:
            os.replace(zip_path, data_dir / zip_path.name)
    print(f"[INFO] Data ready in {settings.display_path(target)}")
    return target


def load_image(image_path: PathLike) -> Image.Image:
    """Open an image file as an upright RGB PIL image: EXIF orientation applied (phone photos are often stored
    sideways), grayscale, RGBA and palette images converted to 3 channels.

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: the file is not an image PIL can read (the message names the file).
    """
    path = Path(image_path)
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {path}. Check the path (relative paths start from {Path.cwd()}).")
    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"{path} is not an image that PIL can read ({error}). Remove or replace this file.") from error


def manual_transforms(image_size: ImageSize = 224) -> transforms.Compose:
    """The course's transform for a ViT trained from scratch: resize to ``image_size`` (224 in Table 3; an int
    or a (height, width) pair), then a float tensor [3, height, width] in [0, 1]."""
    return transforms.Compose([transforms.Resize(to_pair(image_size, name="image_size")), transforms.ToTensor()])


# The paper's reference code scales pixels to [-1, 1]: mean 0.5 and standard deviation 0.5 per channel.
VIT_MEAN = VIT_STD = (0.5, 0.5, 0.5)
AUGMENTATION_POLICIES = ("trivialaugment", "randaugment")


def train_transforms(image_size: int = 224, policy: Optional[str] = "trivialaugment",
                     randaugment_magnitude: int = 9) -> transforms.Compose:
    """Training transform for a ViT trained from scratch on little data (DeiT's and timm's recipes): random resized
    crop (scale 0.35-1) and horizontal flip, an automatic augmentation ``policy`` ("trivialaugment", "randaugment": 2
    ops at ``randaugment_magnitude``, 0-30; None: crop and flip only), normalised to [-1, 1]; ValueError for another
    policy."""
    if policy is not None and policy not in AUGMENTATION_POLICIES:
        raise ValueError(f"policy must be one of {AUGMENTATION_POLICIES} or None, got {policy!r}.")
    steps = [transforms.RandomResizedCrop(image_size, scale=(0.35, 1.0)), transforms.RandomHorizontalFlip()]
    if policy == "trivialaugment":
        steps.append(transforms.TrivialAugmentWide())
    elif policy == "randaugment":
        steps.append(transforms.RandAugment(num_ops=2, magnitude=randaugment_magnitude))
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(VIT_MEAN, VIT_STD)])


def eval_transforms(image_size: int = 224) -> transforms.Compose:
    """Test-time transform matching ``train_transforms``: resize the short side, centre crop, normalise."""
    return transforms.Compose([transforms.Resize(round(image_size / 0.875)), transforms.CenterCrop(image_size),
                               transforms.ToTensor(), transforms.Normalize(VIT_MEAN, VIT_STD)])  # an 87.5 % crop


class _ImageFolder(datasets.ImageFolder):
    """ImageFolder that ignores hidden folders, such as the ``.ipynb_checkpoints`` Jupyter leaves behind."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
        if not classes:
            raise FileNotFoundError(f"Found no class folder in {directory}.")
        return classes, {name: index for index, name in enumerate(classes)}


def _is_image_file(path: str) -> bool:
    """True for image files, False for hidden files (.DS_Store); raises for anything else."""
    name = os.path.basename(path)
    if name.startswith("."):
        return False
    if name.lower().endswith(datasets.folder.IMG_EXTENSIONS):
        return True
    raise DataError(f"{path} is not an image file (expected one of {', '.join(datasets.folder.IMG_EXTENSIONS)}). "
                    f"Remove it or move it out of the data folder.")


def image_folder(directory: PathLike, transform: Optional[Transform], split: str) -> datasets.ImageFolder:
    """The ImageFolder of one split (``split`` names it in messages), read with ``load_image``, hidden files ignored.

    Raises:
        FileNotFoundError: the folder is missing, has no class folders, or a class folder has no images.
        DataError: a file is not an image.
    """
    directory = Path(directory)
    layout = f"{directory}/<class name>/<image>.jpg"
    if not directory.is_dir():
        raise FileNotFoundError(f"The {split} folder {directory} does not exist. Download the data first "
                                f"(download_data) or set {settings.DATA_DIR_ENV} to a folder that has it; images are "
                                f"expected as {layout}.")
    try:
        return _ImageFolder(str(directory), transform=transform, loader=load_image, is_valid_file=_is_image_file)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"The {split} folder {directory} has no images to load: {str(error).strip()} "
                                f"Images are expected as {layout}; every class folder needs at least one.") from error


def create_dataloaders(train_dir: PathLike, test_dir: PathLike, transform: Transform, batch_size: int,
                       num_workers: int = NUM_WORKERS, test_transform: Optional[Transform] = None,
                       drop_last: bool = False, train_sampler: Optional[Sampler] = None,
                       train_collate_fn: Optional[Callable] = None) -> tuple[DataLoader, DataLoader, list[str]]:
    """``(train_dataloader, test_dataloader, class_names)`` from folders laid out as ``<dir>/<class name>/<image>``;
    the test loader keeps its order and every image, and ``transform`` unless ``test_transform`` is given.
    ``drop_last`` leaves out each epoch's last, incomplete training batch (225 images in batches of 32 end with one
    photo, whose optimisation step follows it alone). ``train_sampler`` (None: a shuffle) and ``train_collate_fn``
    (None: stacking) make the training batches, e.g. ``training.data.RepeatedAugmentationSampler``, ``MixUpCutMix``.

    Raises:
        FileNotFoundError: a folder is missing, has no class folders, or a class folder has no images.
        DataError: the train and test class folders differ, a file is not an image (one that only pretends to be
            is reported when the loader reads it), or ``drop_last`` would leave no training batch at all.
    """
    train_data = image_folder(train_dir, transform, "train")
    test_data = image_folder(test_dir, transform if test_transform is None else test_transform, "test")
    if train_data.classes != test_data.classes:
        raise DataError(f"The train and test class folders differ: {train_dir} has {train_data.classes}, {test_dir} "
                        f"has {test_data.classes}. Give both folders the same class folders.")
    if drop_last and len(train_data) < batch_size:
        raise DataError(f"drop_last with a batch size of {batch_size} leaves no training batch: {train_dir} has only "
                        f"{len(train_data)} images. Use a smaller batch size or drop_last=False.")
    # Pinned memory only speeds up copies to a GPU.
    options = dict(batch_size=batch_size, num_workers=num_workers, pin_memory=torch.cuda.is_available())
    train_dataloader = DataLoader(train_data, shuffle=train_sampler is None, sampler=train_sampler, drop_last=drop_last,
                                  collate_fn=train_collate_fn, **options)
    return train_dataloader, DataLoader(test_data, shuffle=False, **options), train_data.classes
