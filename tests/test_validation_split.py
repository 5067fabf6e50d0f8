"""The validation set: the 20 % split's photos that the 10 % split's train and test sets do not hold."""
import os

import pytest
from PIL import Image

from going_modular import data_setup
from going_modular.training import validation_split

CLASSES = ("pizza", "steak", "sushi")


def _split(root, photos):
    """photos: {(split, class): [ids]} -> a folder of tiny JPEGs named <id>.jpg."""
    for (split, name), ids in photos.items():
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for photo_id in ids:
            Image.new("RGB", (8, 8), (photo_id % 255, 0, 0)).save(folder / f"{photo_id}.jpg")
    return root


@pytest.fixture
def splits(tmp_path):
    ten = _split(tmp_path / "ten", {("train", "pizza"): [1, 2], ("train", "steak"): [3], ("train", "sushi"): [4],
                                    ("test", "pizza"): [5], ("test", "steak"): [6], ("test", "sushi"): [7]})
    # The 20 % split repeats 1, 3, 5 and 7 (in its train or its test folder) and adds 8-13.
    twenty = _split(tmp_path / "twenty", {("train", "pizza"): [1, 8, 9], ("train", "steak"): [3, 10],
                                          ("train", "sushi"): [11], ("test", "pizza"): [5],
                                          ("test", "steak"): [12], ("test", "sushi"): [7, 13]})
    return ten, twenty


def _names(folder):
    return {(p.parent.name, p.name) for p in folder.glob("*/*")}


def test_validation_holds_exactly_the_photos_in_neither_train_nor_test(splits, tmp_path):
    ten, twenty = splits
    folder = validation_split.build_validation_split(ten, twenty, tmp_path / "val")
    found = _names(folder)
    assert found == {("pizza", "8.jpg"), ("pizza", "9.jpg"), ("steak", "10.jpg"), ("steak", "12.jpg"),
                     ("sushi", "11.jpg"), ("sushi", "13.jpg")}
    for split in ("train", "test"):  # disjoint from both sets it must not see
        assert not {name for _, name in found} & {p.name for p in (ten / split).glob("*/*")}
    # links into the 20 % split (where links can be made), readable as images
    photo = folder / "pizza" / "8.jpg"
    assert photo.is_symlink() and photo.resolve() == (twenty / "train" / "pizza" / "8.jpg").resolve()
    assert data_setup.load_image(photo).size == (8, 8)


def test_building_again_reuses_the_folder_and_a_wrong_folder_is_refused(splits, tmp_path):
    ten, twenty = splits
    folder = validation_split.build_validation_split(ten, twenty, tmp_path / "val")
    before = {p: os.lstat(p).st_mtime_ns for p in folder.glob("*/*")}
    assert validation_split.build_validation_split(ten, twenty, folder) == folder
    assert {p: os.lstat(p).st_mtime_ns for p in folder.glob("*/*")} == before
    (folder / "pizza" / "8.jpg").unlink()
    with pytest.raises(data_setup.DataError, match="does not hold the expected 6 validation photos.*Delete it"):
        validation_split.build_validation_split(ten, twenty, folder)


def test_photos_are_copied_where_links_cannot_be_made(splits, tmp_path, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError("symbolic links are not supported here (simulated)")

    monkeypatch.setattr(os, "symlink", no_links)
    folder = validation_split.build_validation_split(*splits, tmp_path / "val")
    assert len(_names(folder)) == 6
    assert not any(p.is_symlink() for p in folder.glob("*/*"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".val-")]  # no temporary folder left


def test_the_validation_loader_keeps_the_training_class_order(splits, tmp_path):
    folder = validation_split.build_validation_split(*splits, tmp_path / "val")
    loader = validation_split.create_validation_dataloader(
        folder, data_setup.manual_transforms(8), batch_size=4, class_names=list(CLASSES), num_workers=0)
    labels = [int(label) for _, batch in loader for label in batch]
    assert labels == [0, 0, 1, 1, 2, 2]
    with pytest.raises(data_setup.DataError, match="differ from the training data's"):
        validation_split.create_validation_dataloader(folder, data_setup.manual_transforms(8), 4, ["a", "b", "c"])


def test_a_missing_split_says_how_to_get_it(splits, tmp_path):
    ten, _ = splits
    with pytest.raises(FileNotFoundError, match="download_validation_split"):
        validation_split.build_validation_split(ten, tmp_path / "nowhere", tmp_path / "val")
