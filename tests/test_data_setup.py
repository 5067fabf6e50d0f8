"""Tests for load_image, create_dataloaders and the data directory setting, on tiny generated images."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import RandomSampler, SequentialSampler

from going_modular import data_setup
from going_modular.common import settings
from going_modular.data_setup import create_dataloaders, eval_transforms, load_image, manual_transforms
from going_modular.training.data import MixUpCutMix, RepeatedAugmentationSampler, preloaded

CLASSES = ["pizza", "steak", "sushi"]


def save_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (40, 30)) -> Path:
    """Write a small image in the given PIL mode; the format follows the file extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, color=(200, 120, 40)).convert(mode)
    image.save(path)
    return path


def make_split(root: Path, classes: list[str] = CLASSES) -> Path:
    """Three images per class, in the modes and formats a real photo folder may hold."""
    for name in classes:
        save_image(root / name / "photo.jpg", "RGB", (40, 30))
        save_image(root / name / "gray.png", "L", (25, 50))
        save_image(root / name / "SHOUTY.JPEG", "RGB", (33, 33))
    save_image(root / classes[0] / "transparent.png", "RGBA", (30, 30))
    save_image(root / classes[1] / "palette.png", "P", (30, 20))
    return root


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    make_split(tmp_path / "train")
    make_split(tmp_path / "test")
    return tmp_path


IMAGES_PER_SPLIT = 3 * len(CLASSES) + 2


# ------------------------------------------------------------------------------------------------- load_image


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_load_image_returns_rgb(tmp_path, mode):
    image = load_image(save_image(tmp_path / f"image-{mode}.png", mode, (12, 7)))

    assert image.mode == "RGB"
    assert image.size == (12, 7)


def test_load_image_applies_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: stored sideways, rotate 90 degrees clockwise to view
    path = tmp_path / "sideways.jpg"
    Image.new("RGB", (40, 20), color="red").save(path, exif=exif.tobytes())
    with Image.open(path) as stored:
        assert stored.size == (40, 20)

    assert load_image(path).size == (20, 40)


def test_load_image_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No image file at .*missing.jpg"):
        load_image(tmp_path / "missing.jpg")


def test_load_image_not_an_image(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_text("I am text")

    with pytest.raises(ValueError, match="fake.jpg is not an image that PIL can read"):
        load_image(path)


# ---------------------------------------------------------------------------------------- create_dataloaders


def test_batches_have_the_expected_shapes_dtypes_and_classes(image_root):
    train_dataloader, test_dataloader, class_names = create_dataloaders(
        image_root / "train", image_root / "test", transform=manual_transforms(32), batch_size=4, num_workers=0
    )

    assert class_names == CLASSES
    images, labels = next(iter(train_dataloader))
    assert images.shape == (4, 3, 32, 32)
    assert images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert 0.0 <= images.min() and images.max() <= 1.0
    test_labels = torch.cat([labels for _, labels in test_dataloader])
    assert len(test_labels) == IMAGES_PER_SPLIT
    assert test_labels.tolist() == sorted(test_labels.tolist())  # not shuffled: folders in class order
    assert sum(len(images) for images, _ in train_dataloader) == IMAGES_PER_SPLIT


def test_train_shuffles_test_does_not_and_pin_memory_follows_cuda(image_root):
    train_dataloader, test_dataloader, _ = create_dataloaders(
        image_root / "train", image_root / "test", transform=manual_transforms(32), batch_size=4, num_workers=0
    )

    assert isinstance(train_dataloader.sampler, RandomSampler)
    assert isinstance(test_dataloader.sampler, SequentialSampler)
    assert train_dataloader.pin_memory == test_dataloader.pin_memory == torch.cuda.is_available()
    assert train_dataloader.num_workers == test_dataloader.num_workers == 0


def test_test_transform_is_applied_to_test_images_only(image_root):
    train_dataloader, test_dataloader, _ = create_dataloaders(
        image_root / "train",
        image_root / "test",
        transform=manual_transforms(32),
        batch_size=2,
        num_workers=0,
        test_transform=manual_transforms(16),
    )

    assert next(iter(train_dataloader))[0].shape == (2, 3, 32, 32)
    assert next(iter(test_dataloader))[0].shape == (2, 3, 16, 16)


def test_worker_processes_load_images(image_root):
    train_dataloader, _, _ = create_dataloaders(
        image_root / "train", image_root / "test", transform=manual_transforms(8), batch_size=IMAGES_PER_SPLIT,
        num_workers=2,
    )

    images, labels = next(iter(train_dataloader))

    assert images.shape == (IMAGES_PER_SPLIT, 3, 8, 8)
    assert sorted(set(labels.tolist())) == [0, 1, 2]


def test_hidden_files_and_folders_are_ignored(image_root):
    (image_root / "train" / ".ipynb_checkpoints").mkdir()
    (image_root / "train" / "pizza" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")

    train_dataloader, _, class_names = create_dataloaders(
        image_root / "train", image_root / "test", transform=manual_transforms(8), batch_size=4, num_workers=0
    )

    assert class_names == CLASSES
    assert len(train_dataloader.dataset) == IMAGES_PER_SPLIT


def test_missing_directory(image_root):
    missing = image_root / "valid"

    with pytest.raises(FileNotFoundError, match="The test folder .* does not exist") as excinfo:
        create_dataloaders(image_root / "train", missing, transform=manual_transforms(8), batch_size=4)

    assert str(missing) in str(excinfo.value)
    assert settings.DATA_DIR_ENV in str(excinfo.value)


def test_directory_without_class_folders(image_root):
    empty = image_root / "empty"
    empty.mkdir()

    with pytest.raises(FileNotFoundError, match="has no images to load: Found no class folder") as excinfo:
        create_dataloaders(empty, image_root / "test", transform=manual_transforms(8), batch_size=4)

    assert f"{empty}/<class name>/<image>.jpg" in str(excinfo.value)


def test_class_folder_without_images(image_root):
    for image in (image_root / "train" / "sushi").iterdir():
        image.unlink()

    with pytest.raises(FileNotFoundError, match="Found no valid file for the classes sushi") as excinfo:
        create_dataloaders(image_root / "train", image_root / "test", transform=manual_transforms(8), batch_size=4)

    assert str(image_root / "train") in str(excinfo.value)


def test_train_and_test_classes_must_match(tmp_path):
    make_split(tmp_path / "train", ["pizza", "steak", "sushi"])
    make_split(tmp_path / "test", ["pizza", "steak", "tacos"])

    with pytest.raises(ValueError, match="class folders differ") as excinfo:
        create_dataloaders(tmp_path / "train", tmp_path / "test", transform=manual_transforms(8), batch_size=4)

    assert "['pizza', 'steak', 'sushi']" in str(excinfo.value)
    assert "['pizza', 'steak', 'tacos']" in str(excinfo.value)


def test_file_that_is_not_an_image_is_named_when_the_dataset_is_built(image_root):
    stray = image_root / "train" / "steak" / "notes.txt"
    stray.write_text("remember to buy steak")

    with pytest.raises(ValueError, match="is not an image file") as excinfo:
        create_dataloaders(image_root / "train", image_root / "test", transform=manual_transforms(8), batch_size=4)

    assert str(stray) in str(excinfo.value)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_file_pretending_to_be_an_image_is_named_when_loaded(image_root, num_workers):
    fake = image_root / "test" / "pizza" / "broken.jpg"
    fake.write_text("<html>not really a jpeg</html>")
    _, test_dataloader, _ = create_dataloaders(
        image_root / "train", image_root / "test", transform=manual_transforms(8), batch_size=64,
        num_workers=num_workers,
    )

    with pytest.raises(ValueError, match="broken.jpg is not an image that PIL can read") as excinfo:
        next(iter(test_dataloader))

    assert str(fake) in str(excinfo.value)


@pytest.mark.parametrize(("platform", "expected"), [("win32", 0), ("darwin", 0), ("linux", None)])
def test_default_num_workers_per_platform(monkeypatch, platform, expected):
    monkeypatch.setattr(data_setup.sys, "platform", platform)
    monkeypatch.setattr(data_setup.os, "cpu_count", lambda: 16)

    assert data_setup._default_num_workers() == (4 if expected is None else expected)


# ---------------------------------------------------------------------------------------------- data directory


def test_get_data_dir_honours_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "my-data"))
    assert settings.get_data_dir() == (tmp_path / "my-data").resolve()

    monkeypatch.delenv(settings.DATA_DIR_ENV)
    assert settings.get_data_dir() != (tmp_path / "my-data").resolve()


def test_mixup_cutmix_mixes_images_and_labels_by_the_same_amount():
    torch.manual_seed(0)
    batch = [(torch.full((3, 8, 8), float(i)), i % 3) for i in range(6)]
    for mixup_alpha, cutmix_alpha in ((0.8, 0.0), (0.0, 1.0), (0.8, 1.0)):
        images, labels = MixUpCutMix(3, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)(batch)
        assert images.shape == (6, 3, 8, 8) and labels.shape == (6, 3)
        torch.testing.assert_close(labels.sum(dim=1), torch.ones(6))
        # image i is a mix of image i and its partner: the weight of its own class is its share of the pixels
        own = labels[torch.arange(6), torch.arange(6) % 3]
        assert (own >= 0).all() and (own <= 1).all() and not torch.equal(images, torch.stack([b[0] for b in batch]))
    with pytest.raises(ValueError, match="positive mixup_alpha or cutmix_alpha"):
        MixUpCutMix(3, mixup_alpha=0.0, cutmix_alpha=0.0)


def test_repeated_augmentation_yields_each_chosen_photo_several_times_in_a_row():
    torch.manual_seed(0)
    sampler = RepeatedAugmentationSampler(10, repeats=3)
    epochs = [list(sampler) for _ in range(2)]
    for indices in epochs:
        assert len(indices) == len(sampler) == 10                 # as many images per epoch as a plain shuffle
        runs = [indices[i:i + 3] for i in range(0, 10, 3)]
        assert all(len(set(run)) == 1 for run in runs)              # each photo 3 times in a row ...
        assert len(set(indices)) == 4 and len({run[0] for run in runs}) == 4  # ... ceil(10 / 3) photos, no other repeat
    assert epochs[0] != epochs[1]                                   # a new draw every epoch
    torch.manual_seed(0)
    assert list(sampler) == epochs[0]                               # from the global generator that set_seeds seeds
    assert sorted(RepeatedAugmentationSampler(5, repeats=1)) == list(range(5))
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        RepeatedAugmentationSampler(10, repeats=0)


def test_create_dataloaders_shuffles_with_repeated_augmentation_when_asked(image_root):
    folders = image_root / "train", image_root / "test"
    plain, _, _ = create_dataloaders(*folders, manual_transforms(32), batch_size=2, num_workers=0)
    repeated, _, _ = create_dataloaders(*folders, manual_transforms(32), batch_size=2, num_workers=0,
                                        train_sampler=RepeatedAugmentationSampler(IMAGES_PER_SPLIT, repeats=2))
    assert isinstance(plain.sampler, RandomSampler)
    assert isinstance(repeated.sampler, RepeatedAugmentationSampler) and repeated.sampler.repeats == 2
    assert [len(labels) for _, labels in repeated] == [2] * (IMAGES_PER_SPLIT // 2) + [1]


def test_create_dataloaders_batches_with_the_given_collate_fn(image_root):
    mixing, _, _ = create_dataloaders(image_root / "train", image_root / "test", manual_transforms(8), batch_size=4,
                                      num_workers=0, train_collate_fn=MixUpCutMix(len(CLASSES)))
    images, labels = next(iter(mixing))
    assert images.shape == (4, 3, 8, 8) and labels.shape == (4, len(CLASSES))  # class probabilities


def test_preloaded_keeps_the_batches_and_refuses_a_shuffling_loader(image_root):
    train_loader, test_loader, _ = create_dataloaders(image_root / "train", image_root / "test", eval_transforms(24),
                                                      batch_size=4, num_workers=0)
    in_memory = preloaded(test_loader)
    for (images, labels), (kept_images, kept_labels) in zip(test_loader, in_memory, strict=True):
        assert torch.equal(images, kept_images) and torch.equal(labels, kept_labels)
    with pytest.raises(ValueError, match="shuffles"):
        preloaded(train_loader)
