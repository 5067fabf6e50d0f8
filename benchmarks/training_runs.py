"""What the benchmarks that train share: runs of ``python -m going_modular.train`` in child processes, side by side,
and the summary of their final epochs.

    results = train_in_child(flags, folder, "seed0", threads=1)   # trains, resumes, or reads a finished run
    scores = train_and_score(flags, folder, "seed0", options)     # the same, its final scores, printed
    runs = side_by_side(lambda seed: ..., seeds, jobs=2)
    summarise([0.70, 0.68, 0.71]), mean_std([0.70, 0.68, 0.71])    # {"mean": ..., "std": ...}, "0.697 ± 0.015"

A run whose results JSON is there is read, not trained again (refused if its flags differ); one whose checkpoint is
there resumes (``--resume``). So a sweep stopped half way continues where it stopped, and keeps what finished.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, TypeVar

from going_modular import train
from going_modular.common import settings
from going_modular.training import checkpoint, validation_split

Item, Outcome = TypeVar("Item"), TypeVar("Outcome")


def split_train_flags(argv: Optional[Sequence[str]]) -> tuple[list[str], list[str]]:
    """(the script's own arguments, the flags after ``--`` for ``python -m going_modular.train``); ``sys.argv[1:]``
    when ``argv`` is None."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])


def course_folders(data_dir: Optional[Path], val_dir: Optional[Path]) -> tuple[Path, Path]:
    """(the 10 % split, its validation photos): those given, else the course's, downloaded and built when missing
    (``validation_split.download_validation_split``, which also brings the 20 % split)."""
    if data_dir is None or val_dir is None:
        validation = validation_split.download_validation_split()
        return data_dir or settings.get_data_dir() / "pizza_steak_sushi", val_dir or validation
    return data_dir, val_dir


def add_run_options(parser: argparse.ArgumentParser, output_dir: Path) -> None:
    """The options every training benchmark has: --device, --output-dir, --jobs, --threads."""
    parser.add_argument("--device", default="cpu", help="Device for every run (the timings are for a 2-core CPU).")
    parser.add_argument("--output-dir", type=Path, default=output_dir, help="Where every run's results JSON goes.")
    parser.add_argument("--jobs", type=int, default=1, help="Runs trained at the same time.")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of each run (OMP_NUM_THREADS); by default CPU count / --jobs.")


def check_run_options(parser: argparse.ArgumentParser, options: argparse.Namespace) -> None:
    """Refuse --jobs below 1 (one line, exit status 2) and fill in --threads."""
    if options.jobs < 1:
        parser.error("--jobs must be at least 1")
    options.threads = options.threads or max(1, (os.cpu_count() or 1) // options.jobs)


def train_in_child(flags: Sequence[str], folder: Path, name: str, threads: int, device: str = "cpu",
                   keep_weights: bool = True) -> dict:
    """The results JSON of ``python -m going_modular.train FLAGS``, trained in a child process with ``threads`` CPU
    threads into ``folder`` as ``name`` (its output in ``folder/name.log``); without ``keep_weights`` the weights
    file is deleted once the results are written.

    Raises:
        RuntimeError: the run failed (the message names its log), or ``folder`` holds a finished run of ``name``
            trained with other flags.
    """
    command = [*flags, "--device", device, "--output-dir", str(folder), "--model-name", name]
    results_path = folder / f"{name}_results.json"
    if results_path.exists():
        results = json.loads(results_path.read_text())
        current = {key: str(value) if isinstance(value, Path) else value
                   for key, value in vars(train.parse_args(command)).items()}
        differences = checkpoint.config_differences(results["config"], current, ignore=train.RESUMABLE_CHANGES)
        if differences:
            raise RuntimeError(f"{results_path} holds a finished run with other settings ({'; '.join(differences)}). "
                               f"Delete it, or give another --output-dir.")
        return results
    resume = ["--resume"] if checkpoint.checkpoint_path(folder, name).exists() else []
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"{name}.log"
    with open(log_path, "a") as log:
        completed = subprocess.run([sys.executable, "-m", "going_modular.train", *command, *resume], stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if completed.returncode != 0:
        raise RuntimeError(f"The run {name} failed (exit code {completed.returncode}); its output is in {log_path}.")
    if not keep_weights:
        (folder / f"{name}.pth").unlink(missing_ok=True)
    return json.loads(results_path.read_text())


def train_and_score(flags: Sequence[str], folder: Path, name: str, options: argparse.Namespace,
                    keep_weights: bool = True) -> dict[str, Optional[float]]:
    """``train_in_child`` with the --threads and --device of ``add_run_options``: its ``final_scores``, printed."""
    scores = final_scores(train_in_child(flags, folder, name, options.threads, options.device, keep_weights))
    validation = f"validation {scores['val']:.3f}, " if scores["val"] is not None else ""
    print(f"{folder.name}/{name}: final {validation}test {scores['test']:.3f} in {scores['wall_seconds'] / 60:.1f} min",
          flush=True)
    return scores


def side_by_side(function: Callable[[Item], Outcome], items: Iterable[Item], jobs: int) -> list[Outcome]:
    """``[function(item) for item in items]``, ``jobs`` of them at a time (each a child process, or one thread)."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(function, items))


def final_scores(results: dict) -> dict[str, Optional[float]]:
    """A run's final epoch (not its best: choosing that would tune on the photos that report it): validation and test
    accuracy (validation None without a validation set), optimisation steps (None if not recorded) and wall time in
    seconds."""
    metrics = results["metrics"]
    return {"val": metrics["val_acc"][-1] if metrics.get("val_acc") else None, "test": metrics["test_acc"][-1],
            "steps": len(results["steps"]["lr"]) if "steps" in results else results.get("num_steps"),
            "wall_seconds": results["wall_time_seconds"]}


def summarise(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (n - 1; 0 for one run), min and max.

    Raises:
        ValueError: there is no value.
    """
    if not values:
        raise ValueError("No runs to summarise.")
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def mean_std(values: Sequence[Optional[float]]) -> str:
    """"mean ± std" to 3 decimals, or "-" when there is no value (a point without a validation set)."""
    present = [value for value in values if value is not None]
    if not present:
        return "-"
    stats = summarise(present)
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table, one line a row."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)
