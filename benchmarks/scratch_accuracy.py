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
reports it. The standard deviation is the sample one (n - 1). Results are in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

import torch

from going_modular import utils

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
    argv = list(sys.argv[1:] if argv is None else argv)
    train_flags = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        description="Train a ViT from scratch on pizza_steak_sushi for several seeds; report mean and std of "
                    "the final test accuracy. Flags after -- go to python -m going_modular.train.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="One run per seed.")
    parser.add_argument("--device", default="cpu", help="Device for every run (the target is for a 2-core CPU).")
    parser.add_argument("--output-dir", type=Path, default=Path(tempfile.gettempdir()) / "scratch_accuracy",
                        help="Where each run's model, results JSON and the summary go.")
    parser.add_argument("--label", default="recipe", help="Name of this configuration (a sub-folder of --output-dir).")
    parser.add_argument("--validation", action=argparse.BooleanOptionalAction, default=True,
                        help="Score every run on the course's validation set too. --no-validation for another "
                             "--data-dir, such as the 20 %% split, whose photos the validation set is made of.")
    parser.add_argument("--plain-vit", action="store_true",
                        help="Train the plain ViT-Ti of the earlier measurements (PLAIN_VIT_FLAGS) instead of the hybrid.")
    parser.add_argument("--jobs", type=int, default=1,
                        help="Seeds trained at the same time; each run gets CPU threads / jobs threads.")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of each run (OMP_NUM_THREADS); by default CPU count / --jobs.")
    options = parser.parse_args(own)
    if options.jobs < 1:
        parser.error("--jobs must be at least 1")
    options.threads = options.threads or max(1, (os.cpu_count() or 1) // options.jobs)
    if options.plain_vit:
        train_flags = PLAIN_VIT_FLAGS + train_flags
    return options, train_flags


def _recipe(options: argparse.Namespace) -> list[str]:
    return RECIPE if options.validation else []


def summarise(final_accuracies: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one run), min and max of the final test accuracies."""
    if not final_accuracies:
        raise ValueError("No runs to summarise.")
    return {
        "mean": statistics.fmean(final_accuracies),
        "std": statistics.stdev(final_accuracies) if len(final_accuracies) > 1 else 0.0,
        "min": min(final_accuracies),
        "max": max(final_accuracies),
    }


def _run_seed(seed: int, train_flags: list[str], options: argparse.Namespace, folder: Path) -> dict:
    """Train one seed in a child process; return its final validation and test accuracy and wall time."""
    command = [
        sys.executable, "-m", "going_modular.train", *_recipe(options), *train_flags, "--seed", str(seed),
        "--device", options.device, "--output-dir", str(folder), "--model-name", f"seed{seed}",
    ]
    log_path = folder / f"seed{seed}.log"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "OMP_NUM_THREADS": str(options.threads)})
    wall_time = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"Seed {seed} failed (exit code {completed.returncode}); its output is in {log_path}.")
    metrics = json.loads((folder / f"seed{seed}_results.json").read_text())["metrics"]
    run = {"seed": seed, "final_val_acc": metrics["val_acc"][-1] if "val_acc" in metrics else None,
           "final_test_acc": metrics["test_acc"][-1], "wall_time_seconds": round(wall_time, 1)}
    validation = f"validation {run['final_val_acc']:.3f}, " if run["final_val_acc"] is not None else ""
    print(f"seed {seed}: final {validation}test {run['final_test_acc']:.3f} in {wall_time / 60:.1f} min", flush=True)
    return run


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Run every seed and return (and write) the summary."""
    options, train_flags = parse_args(argv)
    folder = options.output_dir / options.label
    folder.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=options.jobs) as pool:
        runs = list(pool.map(lambda seed: _run_seed(seed, train_flags, options, folder), options.seeds))
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
