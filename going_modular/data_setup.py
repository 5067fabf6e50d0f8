"""Getting image data into PyTorch: downloading the course dataset, loading images, dataloaders.

The course (ZTM "PyTorch Paper Replicating", section 1) downloads FoodVision Mini with
``download_data(source=PIZZA_STEAK_SUSHI_URL, destination="pizza_steak_sushi")`` and turns its
``train/`` and ``test/`` folders into dataloaders with ``create_dataloaders``. Both are written so that
a failure says what went wrong and what to do, and never leaves a half-filled folder behind.
"""
from __future__ import annotations

import hashlib
import math
import os
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable, Iterator, Optional
from urllib.parse import urlparse

import requests
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler, TensorDataset, default_collate
from torchvision import datasets, transforms
from torchvision.transforms import v2
from tqdm.auto import tqdm

from going_modular.common import settings
from going_modular.common.shapes import ImageSize, to_pair
from going_modular.utils import PathLike
Transform = Callable[[Image.Image], torch.Tensor]

PIZZA_STEAK_SUSHI_URL = "https://github.com/mrdbourke/pytorch-deep-learning/raw/main/data/pizza_steak_sushi.zip"
PIZZA_STEAK_SUSHI_20_PERCENT_URL = (
    "https://github.com/mrdbourke/pytorch-deep-learning/raw/main/data/pizza_steak_sushi_20_percent.zip"
)
CUSTOM_IMAGE_URL = "https://raw.githubusercontent.com/mrdbourke/pytorch-deep-learning/main/images/04-pizza-dad.jpeg"


def _default_num_workers() -> int:
    # Windows and macOS start DataLoader workers with "spawn", which re-imports __main__ in every worker;
    # from a notebook that fails (or hangs), so load in the main process there. Linux and Colab fork.
    if sys.platform.startswith(("win", "darwin")):
        return 0
    return min(4, os.cpu_count() or 1)


NUM_WORKERS = _default_num_workers()

_TIMEOUT_S = (30, 30)  # (connect, read): long enough for a slow link, short enough to notice being offline
_CHUNK_BYTES = 1 << 20


class DownloadError(RuntimeError):
    """The server answered a download with an HTTP error status (404, 500, ...)."""


class DataError(ValueError):
    """Data that cannot be used as it is: a damaged download or image, a stray file, mismatched class folders."""


# ---------------------------------------------------------------------------------------------- downloads


def download_file(url: str, path: PathLike, *, sha256: Optional[str] = None) -> Path:
    """Download one file (for example the course's custom image) unless it is already there.

    The file is streamed to a temporary file beside ``path`` and renamed into place only once it is
    complete (and its checksum matches), so an interrupted download never leaves a partial file.

    Args:
        url: address of the file.
        path: where to save it; parent folders are created.
        sha256: expected SHA-256 of the file as hex, or None to skip the check.

    Returns:
        ``path``.

    Raises:
        ConnectionError: no connection, a timeout, or the download broke off (the message says how to
            provide the file by hand).
        DownloadError: the server answered with an HTTP error status.
        DataError: the checksum does not match.
    """
    path = Path(path)
    if path.is_file():
        print(f"[INFO] {settings.display_path(path)} already exists, skipping download.")
        return path
    print(f"[INFO] Downloading {url} to {settings.display_path(path)}")
    _download(url, path, sha256=sha256, manual_hint=f"download {url} with a browser and save it as {path}")
    return path


def download_data(
    source: str,
    destination: str,
    *,
    sha256: Optional[str] = None,
    remove_source: bool = True,
    data_dir: Optional[PathLike] = None,
) -> Path:
    """Download a zip archive and unzip it into ``data_dir / destination``, unless that folder has content.

    The zip is downloaded and extracted inside a temporary folder in ``data_dir``, and the result is moved
    into place only after everything succeeded: a failed or interrupted call (Ctrl-C included) leaves
    nothing that a later call would mistake for finished data. If the zip holds a single top-level folder
    named ``destination``, its content is used, so the data is not nested twice.

    Args:
        source: URL of the zip archive, e.g. ``PIZZA_STEAK_SUSHI_URL``.
        destination: name of the folder to create in ``data_dir``, e.g. ``"pizza_steak_sushi"``.
        sha256: expected SHA-256 of the zip as hex, or None to skip the check.
        remove_source: delete the zip after extracting it; if False it is kept at ``data_dir / <zip name>``.
        data_dir: where datasets live; defaults to ``settings.get_data_dir()`` (env ``VIT_COURSE_DATA_DIR``).

    Returns:
        The path ``data_dir / destination``.

    Raises:
        ConnectionError: no connection, a timeout, or the download broke off (the message says how to
            provide the data by hand).
        DownloadError: the server answered with an HTTP error status.
        DataError: the download is not a readable zip, its checksum does not match, or a member would
            be written outside the destination.
        FileExistsError: ``data_dir / destination`` exists and is not a folder.
    """
    data_dir = Path(data_dir) if data_dir is not None else settings.get_data_dir()
    target = data_dir / destination
    if target.is_dir() and any(target.iterdir()):
        print(f"[INFO] {settings.display_path(target)} already exists, skipping download.")
        return target
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder. Move it away, then download again.")
    zip_name = PurePosixPath(urlparse(source).path).name or f"{destination}.zip"
    manual_hint = (
        f"download {source} with a browser and unzip it so that {target}/train/<class name>/<image> "
        f"exists, or set {settings.DATA_DIR_ENV} to a folder that already holds {destination}/"
    )
    print(f"[INFO] Downloading {source} into {settings.display_path(target)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temporary folder sits in the same file system as target, so the final move is a cheap rename.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as scratch:
        zip_path = Path(scratch) / zip_name
        _download(source, zip_path, sha256=sha256, manual_hint=manual_hint)
        extracted = Path(scratch) / "extracted"
        _safe_extract(zip_path, extracted, source)
        top_level = list(extracted.iterdir())
        if len(top_level) == 1 and top_level[0].is_dir() and top_level[0].name == target.name:
            extracted = top_level[0]
        if target.is_dir():
            target.rmdir()  # empty (checked above); os.replace cannot overwrite a folder on Windows
        os.replace(extracted, target)
        if not remove_source:
            os.replace(zip_path, data_dir / zip_name)
    print(f"[INFO] Data ready in {settings.display_path(target)}")
    return target


def _download(url: str, path: Path, *, sha256: Optional[str], manual_hint: str) -> None:
    """Stream ``url`` to a temporary file beside ``path``, check it, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    partial = Path(partial_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as file, requests.get(url, stream=True, timeout=_TIMEOUT_S) as response:
            if not response.ok:
                raise DownloadError(
                    f"Downloading {url} failed with HTTP status {response.status_code} ({response.reason}). "
                    f"Check the URL, or {manual_hint}."
                )
            size = int(response.headers.get("Content-Length", 0)) or None
            with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=path.name) as progress:
                for chunk in response.iter_content(chunk_size=_CHUNK_BYTES):
                    file.write(chunk)
                    digest.update(chunk)
                    progress.update(len(chunk))
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise DataError(
                f"Checksum mismatch for {url}: expected SHA-256 {sha256.lower()}, got {digest.hexdigest()}. "
                f"The file changed on the server or arrived damaged; try again, or {manual_hint}."
            )
        os.replace(partial, path)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
        raise ConnectionError(
            f"Could not download {url} (no connection, a timeout, or the download broke off: {error}). "
            f"Try again when online, or {manual_hint}."
        ) from error
    finally:
        partial.unlink(missing_ok=True)


def _safe_extract(zip_path: Path, destination: Path, url: str) -> None:
    """Extract ``zip_path`` into ``destination`` after checking that every member stays inside it."""
    if not zipfile.is_zipfile(zip_path):
        with open(zip_path, "rb") as file:
            start = file.read(60)
        raise DataError(
            f"{url} did not send a zip archive (it starts with {start!r}); the server may have sent an error "
            f"page. Check the URL in a browser."
        )
    try:
        with zipfile.ZipFile(zip_path) as archive:
            if not archive.namelist():
                raise DataError(f"The zip archive from {url} is empty. Check the URL in a browser.")
            for name in archive.namelist():
                _check_member(name)
            archive.extractall(destination)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise DataError(f"The zip archive from {url} is damaged ({error}). Download it again.") from error


def _check_member(name: str) -> None:
    """Refuse an archive member whose path is absolute or climbs out of the extraction folder ("zip slip")."""
    posix = PurePosixPath(name.replace("\\", "/"))  # zips made on Windows may use backslashes
    if posix.is_absolute() or PureWindowsPath(name).drive or ".." in posix.parts:
        raise DataError(
            f"Refusing to extract archive member {name!r}: it would be written outside the destination folder. "
            f"The archive is unsafe; nothing was extracted."
        )


# ------------------------------------------------------------------------------------------ images and data


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
    """The course's transform for a ViT trained from scratch: resize to image_size, then to a tensor.

    Args:
        image_size: height and width in pixels, one int for a square (224 in Table 3 of the paper)
            or a (height, width) pair.

    Returns:
        A transform from a PIL image to a float tensor [3, height, width] in [0, 1].

    Raises:
        ValueError: ``image_size`` is not one positive int or a pair of them.
    """
    return transforms.Compose([transforms.Resize(to_pair(image_size, name="image_size")), transforms.ToTensor()])


# The paper's reference code scales pixels to [-1, 1]: mean 0.5 and standard deviation 0.5 per channel.
VIT_MEAN = (0.5, 0.5, 0.5)
VIT_STD = (0.5, 0.5, 0.5)
AUGMENTATION_POLICIES = ("trivialaugment", "randaugment")


def train_transforms(
    image_size: int = 224, policy: Optional[str] = "trivialaugment", randaugment_magnitude: int = 9
) -> transforms.Compose:
    """Training transform for a ViT trained from scratch on little data (as in DeiT and timm's recipes).

    Random resized crop (scale 0.35-1) and horizontal flip, then an automatic augmentation policy,
    then a tensor normalised to [-1, 1].

    Args:
        image_size: output height and width.
        policy: "trivialaugment" (TrivialAugmentWide), "randaugment" (RandAugment, 2 ops at
            ``randaugment_magnitude``) or None (crop and flip only).
        randaugment_magnitude: RandAugment's strength, 0-30 (9 by default, as in its paper's ImageNet runs).

    Raises:
        ValueError: for an unknown ``policy``.
    """
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
    return transforms.Compose([
        transforms.Resize(round(image_size / 0.875)),  # the usual 87.5 % centre crop
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize(VIT_MEAN, VIT_STD),
    ])


def preloaded(dataloader: DataLoader) -> DataLoader:
    """The same evaluation DataLoader, with its images transformed once and kept in memory as tensors.

    Test and validation images go through the same resize and centre crop in every epoch, so decoding
    each JPEG and resizing it again is repeated work, and for a model as small as the small-data recipe's
    a large share of the epoch (benchmarks/README.md, "Is data loading a bottleneck?"). The batches
    are the same tensors in the same order; only ``dataloader.dataset`` becomes a ``TensorDataset`` of
    (images, labels). The tensors take images x 3 x height x width x 4 bytes (51 MB for 466 photos at 96 px).

    Args:
        dataloader: a DataLoader that does not shuffle, over a dataset whose transform draws nothing at random
            (``eval_transforms``, ``manual_transforms``); a random augmentation would be frozen at its first draw.

    Raises:
        ValueError: the DataLoader shuffles (it is not an evaluation DataLoader).
    """
    if not isinstance(dataloader.sampler, SequentialSampler):
        raise ValueError("preloaded() is for evaluation DataLoaders, which keep their order; this one shuffles.")
    return DataLoader(_tensors(dataloader.dataset), batch_size=dataloader.batch_size, shuffle=False,
                      pin_memory=dataloader.pin_memory)


def _tensors(dataset: Dataset) -> TensorDataset:
    # Indexed directly, not through the DataLoader: starting to iterate a DataLoader draws a seed from the
    # global random generator, which would change the initial weights and data order of the run that follows.
    images, labels = zip(*(dataset[index] for index in range(len(dataset))))
    return TensorDataset(torch.stack(images), torch.as_tensor(labels))


class MixUpCutMix:
    """Mix the images and labels of each training batch: MixUp or CutMix, one of them at random per batch.

    MixUp (Zhang et al., 2018) blends two images, x = l x_i + (1 - l) x_j; CutMix (Yun et al., 2019)
    pastes a rectangle of x_j into x_i. Either way the label becomes the same mixture of the two
    one-hot labels, with l drawn from Beta(alpha, alpha). DeiT (Touvron et al., 2021) uses both to train
    ViTs on ImageNet without extra data. Use it as the training DataLoader's ``collate_fn``; the labels
    it returns are class probabilities [batch, num_classes], which ``nn.CrossEntropyLoss`` accepts.

    Args:
        num_classes: number of classes.
        mixup_alpha: MixUp's alpha; 0 leaves MixUp out.
        cutmix_alpha: CutMix's alpha; 0 leaves CutMix out.

    Raises:
        ValueError: both alphas are 0, or one is negative.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0) -> None:
        if min(mixup_alpha, cutmix_alpha) < 0 or max(mixup_alpha, cutmix_alpha) == 0:
            raise ValueError(f"Give a positive mixup_alpha or cutmix_alpha (and neither negative), got "
                             f"{mixup_alpha} and {cutmix_alpha}.")
        mixes = [v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha > 0 else []
        mixes += [v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)] if cutmix_alpha > 0 else []
        self.mix = mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)

    def __call__(self, batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = default_collate(batch)
        return self.mix(images, labels)


class RepeatedAugmentationSampler(Sampler[int]):
    """Repeated augmentation (Hoffer et al., 2020), as DeiT (Touvron et al., 2021) trains: each photo
    several times per batch, each time under a different random augmentation.

    Every epoch shuffles the dataset's indices, keeps the first ceil(n / repeats) and yields each of them
    ``repeats`` times in a row, n indices in all: an epoch has as many images and optimisation steps as a
    plain shuffle, made of about n / repeats photos, so the gradient of a batch averages over several views
    of the same photos. The shuffle draws from the global random generator, which ``utils.set_seeds``
    seeds and a checkpoint saves, so a run and its resumption see the same photos.

    Args:
        num_images: the dataset's length n.
        repeats: how many times each chosen photo is yielded (1: a plain shuffle).

    Raises:
        ValueError: ``repeats`` is below 1.
    """

    def __init__(self, num_images: int, repeats: int) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1 (1: a plain shuffle), got {repeats}.")
        self.num_images, self.repeats = num_images, repeats

    def __iter__(self) -> Iterator[int]:
        chosen = torch.randperm(self.num_images)[:math.ceil(self.num_images / self.repeats)]
        return iter(chosen.repeat_interleave(self.repeats)[:self.num_images].tolist())

    def __len__(self) -> int:
        return self.num_images


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
    raise DataError(
        f"{path} is not an image file (expected one of {', '.join(datasets.folder.IMG_EXTENSIONS)}). "
        f"Remove it or move it out of the data folder."
    )


def image_folder(directory: PathLike, transform: Optional[Transform], split: str) -> datasets.ImageFolder:
    """The ImageFolder dataset of one split (``split`` names it in messages: "train", "test", ...).

    Hidden files and folders are ignored, images are read with ``load_image``, and torchvision's terse
    errors become ones that say what to do.

    Raises:
        FileNotFoundError: the folder is missing, has no class folders, or a class folder has no images.
        DataError: a file is not an image.
    """
    directory = Path(directory)
    layout = f"{directory}/<class name>/<image>.jpg"
    if not directory.is_dir():
        raise FileNotFoundError(
            f"The {split} folder {directory} does not exist. Download the data first (download_data) or set "
            f"{settings.DATA_DIR_ENV} to a folder that has it; images are expected as {layout}."
        )
    try:
        return _ImageFolder(str(directory), transform=transform, loader=load_image, is_valid_file=_is_image_file)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"The {split} folder {directory} has no images to load: {str(error).strip()} "
            f"Images are expected as {layout}; every class folder needs at least one."
        ) from error


def create_dataloaders(
    train_dir: PathLike,
    test_dir: PathLike,
    transform: Transform,
    batch_size: int,
    num_workers: int = NUM_WORKERS,
    test_transform: Optional[Transform] = None,
    drop_last: bool = False,
    train_collate_fn: Optional[Callable] = None,
    repeated_augmentation: int = 1,
) -> tuple[DataLoader, DataLoader, list[str]]:
    """Create training and testing DataLoaders from folders laid out as ``<dir>/<class name>/<image>``.

    Images are read with ``load_image`` (RGB, EXIF orientation applied). Hidden files and folders are
    ignored; any other file that is not an image is an error, so a stray file is noticed, not skipped.

    Args:
        train_dir: folder of training images.
        test_dir: folder of testing images, with the same class folders.
        transform: transform applied to training images (and to test images unless ``test_transform``).
        batch_size: images per batch.
        num_workers: worker processes per DataLoader; ``NUM_WORKERS`` is 0 on Windows and macOS (spawned
            workers fail in notebooks) and otherwise min(4, CPU count).
        test_transform: transform for test images; defaults to ``transform``.
        drop_last: leave out the last, incomplete training batch of every epoch (225 images in batches
            of 32 end with a batch of one image, whose optimisation step follows a single photo). The
            test loader always keeps every image.
        train_collate_fn: how the training loader makes a batch from its images (e.g. ``MixUpCutMix``);
            PyTorch's default stacking when None.
        repeated_augmentation: above 1, the training loader shuffles with ``RepeatedAugmentationSampler``:
            each photo of an epoch comes this many times in a row, under different augmentations.

    Returns:
        ``(train_dataloader, test_dataloader, class_names)``; the training loader shuffles, the test one not.

    Raises:
        FileNotFoundError: a folder is missing, has no class folders, or a class folder has no images.
        DataError: the train and test class folders differ, a file is not an image (the message names it;
            a file that only pretends to be an image is reported when the loader reads it), or
            ``drop_last`` would leave no training batch at all.
    """
    train_data = image_folder(train_dir, transform, "train")
    test_data = image_folder(test_dir, transform if test_transform is None else test_transform, "test")
    if train_data.classes != test_data.classes:
        raise DataError(
            f"The train and test class folders differ: {train_dir} has {train_data.classes}, {test_dir} has "
            f"{test_data.classes}. Give both folders the same class folders."
        )
    if drop_last and len(train_data) < batch_size:
        raise DataError(
            f"drop_last with a batch size of {batch_size} leaves no training batch: {train_dir} has only "
            f"{len(train_data)} images. Use a smaller batch size or drop_last=False."
        )
    pin_memory = torch.cuda.is_available()  # pinned memory only speeds up copies to a GPU
    sampler = None if repeated_augmentation == 1 else RepeatedAugmentationSampler(len(train_data), repeated_augmentation)
    train_dataloader = DataLoader(
        train_data, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, num_workers=num_workers,
        pin_memory=pin_memory, drop_last=drop_last, collate_fn=train_collate_fn,
    )
    test_dataloader = DataLoader(
        test_data, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin_memory
    )
    return train_dataloader, test_dataloader, train_data.classes
