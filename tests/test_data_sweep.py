"""Figure 4 in miniature (benchmarks/data_sweep.py): nested class-balanced subsets, the photos that score each point,
and a sweep of tiny runs that gives every model and point as many optimisation steps."""
import dataclasses
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from going_modular import train
from going_modular.common import settings
from going_modular.training.data import SubsetSampler, balanced_subset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # as when a benchmark runs as a script
import data_sweep  # noqa: E402

LABELS = [0] * 78 + [1] * 75 + [2] * 72  # the 10 % split's training photos: pizza, steak, sushi


def test_a_seeds_subsets_are_nested():
    subsets = [set(balanced_subset(LABELS, size, seed=0)) for size in (28, 56, 112, 225)]
    assert all(smaller < larger for smaller, larger in zip(subsets, subsets[1:]))
    assert subsets[-1] == set(range(225))


@pytest.mark.parametrize("size, counts", [(28, [10, 9, 9]), (56, [19, 19, 18]), (112, [38, 37, 37]),
                                          (216, [72, 72, 72]), (220, [74, 74, 72])])  # no 73rd sushi photo
def test_subsets_are_as_balanced_as_the_classes_allow(size, counts):
    chosen = Counter(LABELS[index] for index in balanced_subset(LABELS, size, seed=1))
    assert [chosen[label] for label in range(3)] == counts


def test_a_subset_is_decided_by_its_seed():
    assert balanced_subset(LABELS, 28, seed=3) == balanced_subset(LABELS, 28, seed=3)
    assert balanced_subset(LABELS, 28, seed=3) != balanced_subset(LABELS, 28, seed=4)


@pytest.mark.parametrize("size", [0, 226])
def test_a_subset_that_cannot_be_drawn_is_refused(size):
    with pytest.raises(ValueError, match=f"A subset of {size} photos cannot be drawn from 225: give 1 to 225"):
        balanced_subset(LABELS, size, seed=0)


def test_a_subsets_epoch_repeats_its_photos_to_the_whole_folders_length():
    torch.manual_seed(0)
    epoch = list(SubsetSampler([3, 7, 9], num_samples=8))
    assert len(epoch) == len(SubsetSampler([3, 7, 9], num_samples=8)) == 8
    assert sorted(Counter(epoch).values()) == [2, 3, 3]  # two whole passes, then two photos of a third
    assert set(epoch[:3]) == set(epoch[3:6]) == {3, 7, 9}


# The course's photos, when they are staged (.ci/run stages them from ../shared/data/)
@pytest.fixture(scope="module")
def course_points() -> list:
    data_dir = settings.get_data_dir()
    needed = [data_dir / name for name in ("pizza_steak_sushi", "pizza_steak_sushi_20_percent")]
    if not all(folder.is_dir() for folder in needed):
        pytest.skip(f"The 10 % and 20 % splits are not in {data_dir}; .ci/run stages them from ../shared/data/.")
    options, _ = data_sweep.parse_args(["--model", "hybrid"])
    data_sweep.resolve_folders(options)  # builds the validation folder from the two splits when it is missing
    return data_sweep.plan(options)


def test_no_photo_that_scores_a_point_is_among_its_training_photos(course_points):
    assert [(point.photos, point.epochs) for point in course_points] == [
        (28, 200), (56, 200), (112, 200), (225, 200), (450, 100)]  # 14 batches an epoch, and 28 for 450 photos
    for point in course_points:
        scoring = data_sweep.scoring_photos(point)
        assert len(scoring) == (391 + 75 if point.val_dir is not None else 75)
        for seed in range(5):
            training = data_sweep.training_photos(point, seed)
            assert len(training) == point.photos and not training & scoring, (point.photos, seed)
    # Why the 450-photo point has no validation score: 255 of its training photos are validation photos.
    larger = course_points[-1]
    with_validation = dataclasses.replace(larger, val_dir=course_points[0].val_dir)
    assert len(data_sweep.training_photos(larger, 0) & data_sweep.scoring_photos(with_validation)) == 255


# The same, on folders made here
def _photos(folder: Path, numbers: range) -> None:
    for name, colour in (("green", (20, 220, 20)), ("red", (220, 20, 20))):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for number in numbers:
            Image.new("RGB", (40, 36 + number % 5), colour).save(folder / name / f"{name}{number}.jpg")


@pytest.fixture
def folders(tmp_path) -> dict[str, Path]:
    """The course's folders in miniature: a 10 % split (8 training, 4 test photos), 4 validation photos, and a larger
    training folder of 16 photos that holds the validation photos, as the 20 % split holds 255 of the 391."""
    _photos(tmp_path / "ten" / "train", range(0, 4))
    _photos(tmp_path / "ten" / "test", range(4, 6))
    _photos(tmp_path / "val", range(6, 8))
    _photos(tmp_path / "larger", range(6, 14))
    return {"--data-dir": tmp_path / "ten", "--val-dir": tmp_path / "val", "--larger-train-dir": tmp_path / "larger"}


def _sweep_argv(folders: dict[str, Path], output_dir: Path, *options: str) -> list[str]:
    return ["--sizes", "4", "--seeds", "0", "--epochs", "2", "--batch-size", "4", "--image-size", "32",
            "--output-dir", str(output_dir), *[str(part) for item in folders.items() for part in item], *options]


def test_a_point_scored_by_its_own_training_photos_is_refused(folders, tmp_path):
    options, _ = data_sweep.parse_args(_sweep_argv(folders, tmp_path / "out", "--model", "vit"))
    points = data_sweep.plan(options)
    data_sweep.check_scoring(points, seeds=[0, 1, 2])
    assert points[-1].val_dir is None and (points[-1].photos, points[-1].epochs) == (16, 1)
    scored_on_validation = dataclasses.replace(points[-1], val_dir=folders["--val-dir"])
    with pytest.raises(ValueError, match=r"4 photos that score the 16-photo point \(seed 0\) are among its training"):
        data_sweep.check_scoring([scored_on_validation], seeds=[0])


def test_a_sweep_of_no_sizes_plans_only_the_larger_folder(folders, tmp_path):
    # how benchmarks/data_sweep_all.sh queues the larger point as one run of its own
    options, _ = data_sweep.parse_args([*_sweep_argv(folders, tmp_path, "--model", "vit")[2:], "--sizes"])
    assert [(point.photos, point.subset, point.val_dir) for point in data_sweep.plan(options)] == [(16, None, None)]


def test_the_sweep_gives_every_model_as_many_steps_at_each_point_scored_on_other_photos(folders, tmp_path, monkeypatch):
    def train_here(command, **kwargs):  # [python, -m, going_modular.train, *flags], without starting a Python each
        train.main(command[3:])        # (test_benchmark.py's scratch_accuracy run starts real child processes)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", train_here)
    output_dir = tmp_path / "out"
    for model, flags in (("resnet18", []), ("vit", ["--num-transformer-layers", "1"])):
        data_sweep.main(_sweep_argv(folders, output_dir, "--model", model, "--", "--num-workers", "0", *flags))
    scoring = {path.name for folder in ("--val-dir", "--data-dir") for path in folders[folder].rglob("*.jpg")
               if "train" not in path.parts}
    for model in ("resnet18", "vit"):
        subset = json.loads((output_dir / model / "n4_seed0_results.json").read_text())
        larger = json.loads((output_dir / model / "n16_seed0_results.json").read_text())
        assert len(subset["steps"]["lr"]) == len(larger["steps"]["lr"]) == 4  # 2 epochs of 2 steps, 1 epoch of 4
        assert len(subset["train_photos"]) == 4 and not {Path(photo).name for photo in subset["train_photos"]} & scoring
        assert larger["num_train_images"] == 16 and larger["val_dir"] is None and "val_acc" not in larger["metrics"]
        assert not (output_dir / model / "n4_seed0.pth").exists()  # the weights are not kept
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: pytest.fail("a finished run was trained again"))
    table = data_sweep.main(_sweep_argv(folders, output_dir, "--model", "vit", "--", "--num-workers", "0",
                                        "--num-transformer-layers", "1"))
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    assert [(row[0], row[1], row[2]) for row in rows] == [
        ("| resnet18", "4", "4"), ("| resnet18", "16", "4"), ("| vit", "4", "4"), ("| vit", "16", "4")]
    assert rows[1][3] == "-" and rows[0][3] != "-"  # no validation score for the larger folder
    assert (output_dir / "summary.md").read_text() == table + "\n"
    data_sweep.main(["--output-dir", str(output_dir), "--plot", str(tmp_path / "sweep.png")])  # only the report
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    archived = tmp_path / "archive"  # as benchmarks/results/figure4: the same table, and runs a sweep reads as done
    data_sweep.main(["--output-dir", str(output_dir), "--archive", str(archived)])
    assert "steps" not in json.loads((archived / "vit" / "n4_seed0_results.json").read_text())
    assert data_sweep.main(["--output-dir", str(archived)]) == table
    data_sweep.main(_sweep_argv(folders, archived, "--model", "vit", "--", "--num-workers", "0",
                                "--num-transformer-layers", "1"))
    with pytest.raises(RuntimeError, match="holds a finished run with other settings .*lr: 0.0005"):
        data_sweep.main(_sweep_argv(folders, output_dir, "--model", "vit", "--", "--num-workers", "0",
                                    "--num-transformer-layers", "1", "--lr", "0.1"))


@pytest.mark.parametrize("flags", [["--epochs", "3"], ["--train-subset=8"], ["--no-drop-last"]])
def test_flags_that_would_change_the_photos_or_steps_of_one_model_are_refused(flags, capsys):
    with pytest.raises(SystemExit):
        data_sweep.parse_args(["--model", "vit", "--", "--lr", "1e-3", *flags])
    assert "would give the models different photos or steps" in capsys.readouterr().err


def test_the_results_readme_shows_the_archived_sweep(tmp_path):
    archived = tmp_path / "figure4"  # a copy: the report writes summary.md beside the runs
    shutil.copytree(ROOT / "benchmarks" / "results" / "figure4", archived)
    table = data_sweep.main(["--output-dir", str(archived)])
    assert len(table.splitlines()) == 2 + 15  # 3 models x 5 sizes
    assert table in (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
