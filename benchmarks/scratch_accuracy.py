"""How well does a ViT trained from scratch on pizza_steak_sushi (225 images) do? Train it for several seeds.

    python benchmarks/scratch_accuracy.py                       # the course's small-data recipe, seeds 0 1 2, CPU
    python benchmarks/scratch_accuracy.py -- --augment crop-flip  # an ablation: any train flag after --
    python benchmarks/scratch_accuracy.py --plain-vit --label plain_recipe  # the plain ViT-Ti (no stem)
    python benchmarks/scratch_accuracy.py --no-validation --label split20 -- --data-dir data/pizza_steak_sushi_20_percent

Each seed is one run of ``python -m going_modular.train`` (a child process) with ``RECIPE`` followed by
the flags given after ``--`` (a later flag wins). ``--jobs 2`` runs two seeds at a time, each with half
the CPU threads. Every run is scored on the course's validation set (``--val-dir auto``: 391 photos of
the 20 % split that are in neither the 10 % split's training nor its test set; see
``going_modular.training.validation_split``) as well as on the 75 test photos. Recipes are chosen by validation
accuracy alone; the test accuracy is the number a chosen recipe reports. The script prints each seed's
final validation and test accuracy and wall time, then a summary line

    scratch_accuracy label=... val=0.xxx+-0.xxx (min-max) test=0.xxx+-0.xxx (min-max) seeds=3 wall_s_per_seed=... device=cpu

and writes every run's results JSON and a ``summary.json`` to --output-dir. "Final" means the last epoch's
accuracy, not the best epoch's: choosing the best epoch by its accuracy would tune on the data that
reports it. The standard deviation is the sample one (n - 1). The wall time is the training command's own
(its epochs, evaluation included). Run again, the script reads the seeds that finished instead of training
them again, and resumes an interrupted one (``training_runs.train_in_child``). Results are in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import torch

from going_modular import utils
from training_runs import (add_run_options, check_run_options, side_by_side, split_train_flags, summarise,
                           train_and_score)

# The small-data recipe is what ``python -m going_modular.train`` trains with no flags
# (``recipe.TRAINING_RECIPES["small-data"]``: the paper's hybrid input, a convolutional stem cut into 1 x 1
# patches, 6 encoder layers of ViT-Ti's width, 96 x 96 pixels, 200 epochs; benchmarks/README.md says how it
# was chosen). Every run is also scored on the validation set.
RECIPE = ["--val-dir", "auto"]

# The plain ViT-Ti recipe of the earlier measurements in benchmarks/README.md (no stem: 8 x 8 patches of
# 32 x 32 images, 12 layers, mean pooling, peak learning rate 3e-4, 100 epochs with 5 of warmup), for
# ``python benchmarks/scratch_accuracy.py --plain-vit``.
PLAIN_VIT_FLAGS = ["--stem-channels", "0", "--patch-size", "8", "--image-size", "32", "--num-transformer-layers", "12",
                   "--pool", "mean", "--lr", "3e-4", "--epochs", "100", "--warmup-epochs", "5"]


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple[argparse.Namespace, list[str]]:
    """Split the command line into this script's options and the train flags after ``--``."""
    own, train_flags = split_train_flags(argv)
    parser = argparse.ArgumentParser(
        description="Train a ViT from scratch on pizza_steak_sushi for several seeds; report mean and std of "
                    "the final test accuracy. Flags after -- go to python -m going_modular.train.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="One run per seed.")
    add_run_options(parser, Path(tempfile.gettempdir()) / "scratch_accuracy")
    parser.add_argument("--label", default="recipe", help="Name of this configuration (a sub-folder of --output-dir).")
    parser.add_argument("--validation", action=argparse.BooleanOptionalAction, default=True,
                        help="Score every run on the course's validation set too. --no-validation for another "
                             "--data-dir, such as the 20 %% split, whose photos the validation set is made of.")
    parser.add_argument("--plain-vit", action="store_true",
                        help="Train the plain ViT-Ti of the earlier measurements (PLAIN_VIT_FLAGS) instead of the hybrid.")
    options = parser.parse_args(own)
    check_run_options(parser, options)
    if options.plain_vit:
        train_flags = PLAIN_VIT_FLAGS + train_flags
    return options, train_flags


def _recipe(options: argparse.Namespace) -> list[str]:
    return RECIPE if options.validation else []


def _run_seed(seed: int, train_flags: list[str], options: argparse.Namespace, folder: Path) -> dict:
    """Train one seed in a child process; return its final validation and test accuracy and wall time."""
    scores = train_and_score([*_recipe(options), *train_flags, "--seed", str(seed)], folder, f"seed{seed}", options)
    return {"seed": seed, "final_val_acc": scores["val"], "final_test_acc": scores["test"],
            "wall_time_seconds": round(scores["wall_seconds"], 1)}


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Run every seed and return (and write) the summary."""
    options, train_flags = parse_args(argv)
    folder = options.output_dir / options.label
    folder.mkdir(parents=True, exist_ok=True)
    runs = side_by_side(lambda seed: _run_seed(seed, train_flags, options, folder), options.seeds, options.jobs)
    with_validation = all(run["final_val_acc"] is not None for run in runs)
    summary = {
        "label": options.label,
        "train_flags": [*_recipe(options), *train_flags],
        "device": options.device,
        "torch_version": torch.__version__,
        "jobs": options.jobs,
        "cpu_threads_per_run": options.threads,
        "runs": runs,
        "final_val_acc": summarise([run["final_val_acc"] for run in runs]) if with_validation else None,
        "final_test_acc": summarise([run["final_test_acc"] for run in runs]),
        "wall_time_seconds_per_seed": statistics.fmean(run["wall_time_seconds"] for run in runs),
    }
    utils.save_json(summary, folder / "summary.json")
    parts = [f"{split}={stats['mean']:.3f}+-{stats['std']:.3f} ({stats['min']:.3f}-{stats['max']:.3f})"
             for split, stats in (("val", summary["final_val_acc"]), ("test", summary["final_test_acc"])) if stats]
    print(f"scratch_accuracy label={options.label} {' '.join(parts)} seeds={len(runs)} "
          f"wall_s_per_seed={summary['wall_time_seconds_per_seed']:.0f} device={options.device}")
    return summary


if __name__ == "__main__":
    main()
