"""Figure 4 in miniature: a CNN, the plain ViT and the hybrid ViT trained from scratch on more and more photos.

    python benchmarks/data_sweep.py --model resnet18 --jobs 2 --threads 1 -- --lr 5e-4   # one model at every point
    python benchmarks/data_sweep.py --plot images/data_sweep.png                        # the table and picture only

Section 4.3 of the paper trains ViTs and ResNets on subsets of JFT-300M from 9 M to 300 M images (Figure 4): with
little data the ResNets win, convolution building in locality and translation equivariance; with enough data ViT
overtakes them. Here the points are nested class-balanced subsets of the 10 % split's 225 training photos
(``--sizes``; the train command's ``--train-subset``: one seed's 28 photos are among its 56, ...) and the 20 % split's
450 training photos. The models (``MODELS``; the flags after ``--`` are a model's recipe, chosen on the validation
set at 225 photos and kept at every size):

    resnet18  torchvision's ResNet-18 from scratch, the standard smallest ResNet rather than one made to ViT-Ti's
              size: a library's model anyone can check, and one a calibration outside the project brought level with
              the hybrid on this data pipeline. It has 3.8 times the ViTs' parameters (11.2 M) and 2.8 times their
              FLOPs a photo; the ViT runs of benchmarks/README.md gained nothing from size on these photos.
    vit       the plain ViT: 16 x 16 patches cut from the 96 px image (36 tokens), 6 layers of ViT-Ti's width.
    hybrid    the course's small-data recipe: the same encoder behind a convolutional stem cut into 1 x 1 patches.

Every model and size gets the same data pipeline (``--image-size``, ``--batch-size`` without the incomplete last batch)
and the same number of optimisation steps: ``--epochs`` epochs as long as the 10 % split's (14 batches of 16). A
subset's photos repeat within an epoch, and the 450-photo point trains half as many epochs of twice the length. The
sweep gives these flags itself, after the model's, so they win.

Scoring: a subset of the 10 % split is scored on the validation set (391 photos of the 20 % split in neither 10 %
folder) and on the 10 % test set (75 photos); the 450-photo point, whose photos include 255 of the validation
photos, on the test set only. Before anything trains, every point's training photos are checked by file name
against the photos that score it.

Each run is one ``python -m going_modular.train`` (``training_runs.train_in_child``), its results JSON in
<output-dir>/<label>/n<photos>_seed<seed>_results.json: run again, the sweep reads what finished and resumes what was
interrupted. The table (final epoch, mean ± sample std over seeds and each seed's value, wall time per run) covers
every label in <output-dir>; it is printed and written to <output-dir>/summary.md. ``--archive DIR`` copies the
results without their per-step lists (135 kB a run -> 20), as benchmarks/results/figure4 holds this project's runs:
``--output-dir`` of that folder gives the recorded table and picture without training.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import matplotlib.pyplot as plt

from going_modular import data_setup
from going_modular.figures.plotting import plot_accuracy_against_photos
from going_modular.training import recipe
from going_modular.training.data import balanced_subset
from training_runs import (add_run_options, check_run_options, course_folders, final_scores, markdown_table, mean_std,
                           side_by_side, split_train_flags, train_and_score)

# Each model's flags of python -m going_modular.train, under its default recipe (small-data).
MODELS = {"resnet18": ["--model", "resnet18"], "vit": ["--stem-channels", "0", "--patch-size", "16"], "hybrid": []}
# The flags that decide a run's photos and steps: the sweep's, the same for every model.
SWEEP_FLAGS = ("--recipe", "--data-dir", "--train-dir", "--train-subset", "--val-dir", "--epochs", "--batch-size",
               "--drop-last", "--no-drop-last", "--image-size", "--seed", "--max-batches", "--accumulation-steps")
SMALL_DATA = recipe.TRAINING_RECIPES["small-data"]


@dataclass(frozen=True)
class Point:
    """One point of the curve: its training photos (``subset`` of those in ``train_dir``, or all of them when None),
    how many epochs give it the sweep's number of steps, and the folders that score it (no validation: None)."""

    photos: int
    train_dir: Path
    subset: Optional[int]
    epochs: int
    val_dir: Optional[Path]
    test_dir: Path


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple[argparse.Namespace, list[str]]:
    """This script's options, and the model's train flags after ``--``."""
    own, train_flags = split_train_flags(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", choices=MODELS, help="The model to train at every point; none: only report.")
    parser.add_argument("--label", help="Its runs' folder in --output-dir and name in the table; None: --model.")
    parser.add_argument("--sizes", type=int, nargs="*", default=[28, 56, 112, 225],
                        help="Subsets of the 10 %% split's training photos (none: only --larger).")
    parser.add_argument("--larger", action=argparse.BooleanOptionalAction, default=True,
                        help="Also train on all of --larger-train-dir (the 20 %% split's 450 photos).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="One run per seed and point.")
    parser.add_argument("--epochs", type=int, default=SMALL_DATA["epochs"],
                        help="Epochs of the 10 %% split's length, for every model and point.")
    parser.add_argument("--batch-size", type=int, default=SMALL_DATA["batch_size"], help="The same for every run.")
    parser.add_argument("--image-size", type=int, default=SMALL_DATA["image_size"], help="The same for every run.")
    parser.add_argument("--data-dir", type=Path, help="The 10 %% split (train/, test/); None: the course's.")
    parser.add_argument("--val-dir", type=Path, help="Its validation photos; None: the course's (validation_split).")
    parser.add_argument("--larger-train-dir", type=Path, help="None: the 20 %% split's train/.")
    parser.add_argument("--plot", type=Path, help="Draw accuracy against training photos into this PNG.")
    parser.add_argument("--archive", type=Path, help="Copy every finished run's results, without per-step lists, "
                        "to this folder's <label>/.")
    add_run_options(parser, Path(tempfile.gettempdir()) / "data_sweep")
    options = parser.parse_args(own)
    check_run_options(parser, options)
    fixed = [flag for flag in train_flags if flag.split("=")[0] in SWEEP_FLAGS]
    if fixed:
        parser.error(f"{', '.join(fixed)} after -- would give the models different photos or steps: the sweep sets "
                     f"them itself (--sizes, --epochs, --batch-size, --image-size, --seeds, --data-dir, ...)")
    return options, train_flags


def resolve_folders(options: argparse.Namespace) -> None:
    """The course's folders for those left out, downloaded (and the validation set built) when missing."""
    options.data_dir, options.val_dir = course_folders(options.data_dir, options.val_dir)
    if options.larger and options.larger_train_dir is None:  # the course's folders come with the 20 % split
        options.larger_train_dir = course_folders(None, None)[0].parent / "pizza_steak_sushi_20_percent" / "train"


def plan(options: argparse.Namespace) -> list[Point]:
    """The points of ``options`` (folders resolved), smallest first, with the epochs that give each as many steps.

    Raises:
        ValueError: a size is not a possible subset, or the larger folder cannot take as many steps.
    """
    train_dir, test_dir = options.data_dir / "train", options.data_dir / "test"
    reference = len(data_setup.image_folder(train_dir, None, "train"))
    if not all(1 <= size <= reference for size in options.sizes):
        raise ValueError(f"--sizes must be between 1 and the {reference} photos of {train_dir}, got {options.sizes}")
    points = [Point(size, train_dir, size, options.epochs, options.val_dir, test_dir) for size in sorted(options.sizes)]
    if options.larger:
        larger = len(data_setup.image_folder(options.larger_train_dir, None, "train"))
        steps, larger_steps = reference // options.batch_size, larger // options.batch_size  # drop_last
        if options.epochs * steps % larger_steps:
            raise ValueError(f"{options.epochs} epochs of {steps} steps is no whole number of {larger}-photo epochs "
                             f"({larger_steps} steps): choose --epochs so that it is (a multiple of 2 for 225 and 450)")
        points.append(Point(larger, options.larger_train_dir, None, options.epochs * steps // larger_steps, None,
                            test_dir))
    return points


def training_photos(point: Point, seed: int) -> set[str]:
    """The file names ``python -m going_modular.train`` trains on at ``point`` with ``seed``."""
    folder = data_setup.image_folder(point.train_dir, None, "train")
    indices = balanced_subset(folder.targets, point.subset, seed) if point.subset else range(len(folder))
    return {Path(folder.samples[index][0]).name for index in indices}


def scoring_photos(point: Point) -> set[str]:
    """The file names of the photos that score ``point``: its validation set's, if it has one, and the test set's."""
    folders = [folder for folder in (point.val_dir, point.test_dir) if folder is not None]
    return {Path(path).name for folder in folders
            for path, _ in data_setup.image_folder(folder, None, "scoring").samples}


def check_scoring(points: Sequence[Point], seeds: Sequence[int]) -> None:
    """Raise ValueError, naming the photos, if any photo that scores a point is among its training photos."""
    for point in points:
        for seed in seeds:
            shared = training_photos(point, seed) & scoring_photos(point)
            if shared:
                raise ValueError(f"{len(shared)} photos that score the {point.photos}-photo point (seed {seed}) are "
                                 f"among its training photos, e.g. {sorted(shared)[:3]}: give folders without them")


def run_flags(point: Point, seed: int, model_flags: Sequence[str], options: argparse.Namespace) -> list[str]:
    """The train flags of one run: the model's, then the sweep's (which win)."""
    flags = [*model_flags, "--data-dir", str(options.data_dir), "--epochs", str(point.epochs), "--batch-size",
             str(options.batch_size), "--drop-last", "--image-size", str(options.image_size), "--seed", str(seed)]
    flags += ["--train-subset", str(point.subset)] if point.subset else ["--train-dir", str(point.train_dir)]
    return flags + (["--val-dir", str(point.val_dir)] if point.val_dir is not None else [])


def collect(output_dir: Path) -> dict[str, dict[int, list[dict]]]:
    """Label -> number of training photos -> the final scores (``final_scores``) of each finished run."""
    runs: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(output_dir.glob("*/n*_seed*_results.json")):
        results = json.loads(path.read_text())
        runs[path.parent.name][results["num_train_images"]].append(final_scores(results))
    return runs


def archive(output_dir: Path, archive_dir: Path) -> None:
    """Copy each finished run's results JSON in ``output_dir`` to ``archive_dir``/<label>/ without its per-step lists
    (``steps``), whose length stays as ``num_steps``: a finished run that ``collect`` and a resumed sweep read alike."""
    for path in output_dir.glob("*/n*_seed*_results.json"):
        results = json.loads(path.read_text())
        if "steps" in results:
            results["num_steps"] = len(results.pop("steps")["lr"])
        target = archive_dir / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(results, indent=1) + "\n")


def _with_seeds(values: Sequence[Optional[float]]) -> str:
    """``mean_std``, then each seed's value in brackets when there are several."""
    present = [value for value in values if value is not None]
    return mean_std(values) + (f" ({', '.join(f'{value:.3f}' for value in present)})" if len(present) > 1 else "")


def report(options: argparse.Namespace) -> str:
    """The Markdown table of every finished run in --output-dir (written to summary.md), and the --plot."""
    runs = collect(options.output_dir)
    rows = []
    for label, points in sorted(runs.items()):
        for photos, scores in sorted(points.items()):
            steps = "/".join(str(steps) for steps in sorted({run["steps"] for run in scores}))  # one number, or a bug
            rows.append([label, photos, steps, _with_seeds([run["val"] for run in scores]),
                         _with_seeds([run["test"] for run in scores]),
                         f"{statistics.fmean(run['wall_seconds'] for run in scores) / 60:.1f}", len(scores)])
    table = markdown_table(["model", "training photos", "steps", "validation (final)", "10 % test (final)",
                            "min per run", "seeds"], rows)
    options.output_dir.mkdir(parents=True, exist_ok=True)
    (options.output_dir / "summary.md").write_text(table + "\n")
    if options.plot is not None:
        figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        for axis, split, title in zip(axes, ("val", "test"), ("validation set", "10 % test set (75 photos)")):
            accuracies = {label: {photos: [run[split] for run in scores] for photos, scores in points.items()
                                  if scores[0][split] is not None} for label, points in sorted(runs.items())}
            plot_accuracy_against_photos(accuracies, axis, title=f"From scratch: {title}")
        options.plot.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(options.plot, dpi=100, bbox_inches="tight")
        plt.close(figure)
    return table


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Train --model at every point and seed not yet finished (none without --model); return the table."""
    options, train_flags = parse_args(argv)
    if options.model is not None:
        resolve_folders(options)
        try:
            points = plan(options)
            check_scoring(points, options.seeds)
        except (ValueError, FileNotFoundError) as error:
            raise SystemExit(f"error: {error}") from None
        folder = options.output_dir / (options.label or options.model)
        model_flags = [*MODELS[options.model], *train_flags]

        def run(job: tuple[int, Point]) -> dict:
            seed, point = job
            return train_and_score(run_flags(point, seed, model_flags, options), folder,
                                   f"n{point.photos}_seed{seed}", options, keep_weights=False)

        side_by_side(run, [(seed, point) for seed in options.seeds for point in points], options.jobs)
    table = report(options)
    if options.archive is not None:
        archive(options.output_dir, options.archive)
    print(table)
    return table


if __name__ == "__main__":
    main()
