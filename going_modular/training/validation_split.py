"""The course's validation set: photos to choose a recipe by, so that the 75 test photos report it once.
``pizza_steak_sushi`` (10 % of Food-101's pizza, steak and sushi) and ``pizza_steak_sushi_20_percent`` were drawn
separately, with files named by their Food-101 id. The 20 % split's photos in neither the 10 % split's train nor
test set (391 of 600) are the validation set, ``pizza_steak_sushi_validation/<class>/<photo>.jpg``, links to them."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader

from going_modular import data_setup
from going_modular.common import settings
from going_modular.utils import PathLike

VALIDATION_FOLDER = "pizza_steak_sushi_validation"


def _photos_by_class(split_dir: Path) -> dict[str, list[Path]]:
    photos: dict[str, list[Path]] = {}
    for split in ("train", "test"):
        folder = split_dir / split
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder} does not exist: a split needs train/ and test/ folders. Download it with "
                f"going_modular.training.validation_split.download_validation_split() or data_setup.download_data.")
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            photos.setdefault(class_dir.name, []).extend(
                p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    return photos


def build_validation_split(ten_percent_dir: PathLike, twenty_percent_dir: PathLike,
                           destination: Optional[PathLike] = None) -> Path:
    """Make (or reuse) ``destination/<class>/<photo>`` (default ``<data dir>/pizza_steak_sushi_validation``): links
    to the 20 % split's photos whose file names the 10 % split does not hold (copies where links fail), built beside
    it and renamed into place.

    Raises:
        FileNotFoundError: a split's train/ or test/ folder is missing.
        DataError: the splits' class folders differ, no photo is left, or ``destination`` holds other photos.
    """
    ten, twenty = _photos_by_class(Path(ten_percent_dir)), _photos_by_class(Path(twenty_percent_dir))
    if ten.keys() != twenty.keys():
        raise data_setup.DataError(f"The two splits have different class folders: {sorted(ten)} in {ten_percent_dir}, "
                                   f"{sorted(twenty)} in {twenty_percent_dir}. Both must split the same dataset.")
    seen = {path.name for paths in ten.values() for path in paths}
    photos = {name: sorted(path for path in paths if path.name not in seen) for name, paths in sorted(twenty.items())}
    destination = Path(destination) if destination is not None else settings.get_data_dir() / VALIDATION_FOLDER
    expected = {(name, path.name) for name, paths in photos.items() for path in paths}
    if not expected:
        raise data_setup.DataError(
            f"Every photo of {twenty_percent_dir} is also in {ten_percent_dir}: no validation photo.")
    if destination.exists():
        found = {(p.parent.name, p.name) for p in destination.glob("*/*") if not p.name.startswith(".")}
        if found != expected:
            raise data_setup.DataError(f"{destination} exists but does not hold the expected {len(expected)} "
                                       f"validation photos ({len(found)} found). Delete it, and it is built again.")
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{destination.name}-") as scratch:
        building = Path(scratch) / destination.name
        for name, paths in photos.items():
            (building / name).mkdir(parents=True)
            final_folder = (destination / name).resolve()
            for path in paths:
                try:  # a relative link, right once the folder is moved into place
                    os.symlink(os.path.relpath(path.resolve(), final_folder), building / name / path.name)
                except OSError:
                    shutil.copy2(path, building / name / path.name)
        os.replace(building, destination)
    print(f"[INFO] Validation set ready in {settings.display_path(destination)}: {len(expected)} photos "
          f"({', '.join(f'{name} {len(paths)}' for name, paths in photos.items())})")
    return destination


def download_validation_split(data_dir: Optional[PathLike] = None) -> Path:
    """Download the 10 % and 20 % splits when missing, and return the validation folder built from them;
    ConnectionError when a split is missing and cannot be downloaded (the message says how to get it)."""
    data_dir = Path(data_dir) if data_dir is not None else settings.get_data_dir()
    ten = data_setup.download_data(data_setup.PIZZA_STEAK_SUSHI_URL, "pizza_steak_sushi", data_dir=data_dir)
    twenty = data_setup.download_data(data_setup.PIZZA_STEAK_SUSHI_20_PERCENT_URL, "pizza_steak_sushi_20_percent",
                                      data_dir=data_dir)
    return build_validation_split(ten, twenty, data_dir / VALIDATION_FOLDER)


def create_validation_dataloader(val_dir: PathLike, transform: data_setup.Transform, batch_size: int,
                                 class_names: list[str], num_workers: int = data_setup.NUM_WORKERS) -> DataLoader:
    """A DataLoader over ``val_dir/<class>/<image>`` in a fixed order, for evaluation.

    Raises:
        FileNotFoundError: ``val_dir`` is missing or empty.
        DataError: its class folders differ from ``class_names`` (those of the training data).
    """
    dataset = data_setup.image_folder(val_dir, transform, "validation")
    if dataset.classes != list(class_names):
        raise data_setup.DataError(f"The validation class folders {dataset.classes} in {val_dir} differ from the "
                                   f"training data's {list(class_names)}. Give a validation folder with those classes.")
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=torch.cuda.is_available())
