"""Transfer the paper's way: the pretrained ViT-Ti/16 on the 10 % split's 225 photos, its head alone or every weight.

    python benchmarks/finetune.py --jobs 2 --threads 1                    # 5 seeds of each configuration, CPU
    python benchmarks/finetune.py --configs finetune_384 -- --epochs 4    # flags after -- go to the fine-tuning runs

``CONFIGS``, each scored on the validation set (391 photos) and the 10 % test set (75 photos):

    frozen_224    notebook 06's: the backbone frozen and its features of the photos computed once (the weights' own
                  transforms: 248 px bicubic, the centre 224), a new zero head trained 10 epochs with Adam at 1e-3,
                  batch 32 (``features.train_head``). The paper does this only for its few-shot linear probes.
    finetune_224  every weight fine-tuned as in appendix B.1.1 (``--recipe finetune`` of the train command): SGD with
                  momentum 0.9, no weight decay, one epoch of linear warmup then cosine decay, clipping at global norm
                  1, random crops and flips, batch 32 (the paper's 512), 8 epochs; dropout 0, as the weights had.
    finetune_384  the same at 384 px, the position embeddings interpolated from 14 x 14 to 24 x 24 (section 3.2),
                  6 epochs.

One results JSON per run in <output-dir>/<config>/seed<seed>_results.json: run again, the script reads what finished
and resumes what was interrupted. The table (final epoch, mean ± sample std over seeds, wall time per run) is printed
and written to <output-dir>/summary.md. A frozen-head run's wall time is the feature extraction's plus its head's.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader

from going_modular import data_setup, features, pretrained, utils
from training_runs import (add_run_options, check_run_options, course_folders, final_scores, markdown_table, mean_std,
                           side_by_side, split_train_flags, train_and_score)

WEIGHTS = "vit_ti_16_augreg"
HEAD = {"epochs": 10, "lr": 1e-3, "batch_size": 32}  # notebook 06's head: Adam, on the cached features
# Each configuration's flags of python -m going_modular.train --recipe finetune; None: the frozen head, in this process.
CONFIGS: dict[str, Optional[list[str]]] = {
    "frozen_224": None,
    "finetune_224": [],
    "finetune_384": ["--image-size", "384", "--epochs", "6"],
}


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple[argparse.Namespace, list[str]]:
    """This script's options, and the train flags after ``--`` (for the fine-tuning configurations)."""
    own, train_flags = split_train_flags(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS), help="What to run.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="One run per seed.")
    parser.add_argument("--data-dir", type=Path, help="The 10 %% split (train/, test/); None: the course's.")
    parser.add_argument("--val-dir", type=Path, help="Its validation photos; None: the course's (validation_split).")
    add_run_options(parser, Path(tempfile.gettempdir()) / "finetune")
    options = parser.parse_args(own)
    check_run_options(parser, options)
    options.data_dir, options.val_dir = course_folders(options.data_dir, options.val_dir)
    return options, train_flags


def train_frozen_heads(options: argparse.Namespace) -> None:
    """frozen_224 for every seed not yet finished: the backbone's features once, then a head per seed."""
    folder = options.output_dir / "frozen_224"
    seeds = [seed for seed in options.seeds if not (folder / f"seed{seed}_results.json").exists()]
    if not seeds:
        return
    torch.set_num_threads(options.threads)
    folders = {"train": options.data_dir / "train", "test": options.data_dir / "test", "val": options.val_dir}
    transforms = pretrained.PRETRAINED_WEIGHTS[WEIGHTS].transforms()
    datasets = {split: data_setup.image_folder(path, transforms, split) for split, path in folders.items()}
    class_names = datasets["train"].classes
    if any(dataset.classes != class_names for dataset in datasets.values()):
        raise SystemExit(f"error: {', '.join(map(str, folders.values()))} must hold the same class folders")
    start = time.perf_counter()
    model, _ = pretrained.load_pretrained_vit(WEIGHTS, num_classes=len(class_names), device=options.device)
    backbone = features.vit_backbone(model)
    cached = {split: features.extract_features(backbone, DataLoader(dataset, batch_size=HEAD["batch_size"]),
                                               options.device, progress=False) for split, dataset in datasets.items()}
    feature_seconds = time.perf_counter() - start
    for seed in seeds:
        start = time.perf_counter()
        history = features.train_head(model.head, cached["train"], cached["test"], options.device, seed=seed,
                                      val_features=cached["val"], **HEAD)
        head_seconds = time.perf_counter() - start
        utils.save_json({"metrics": history, "seed": seed, "config": {"weights": WEIGHTS, **HEAD},
                         "feature_seconds": round(feature_seconds, 2), "head_seconds": round(head_seconds, 2),
                         "wall_time_seconds": round(feature_seconds + head_seconds, 2),
                         "torch_version": torch.__version__, "device": options.device},
                        folder / f"seed{seed}_results.json")


def finetune_flags(config: str, seed: int, options: argparse.Namespace, train_flags: Sequence[str]) -> list[str]:
    """The train flags of one fine-tuning run: the recipe, the configuration's, then those after ``--``."""
    return ["--recipe", "finetune", "--data-dir", str(options.data_dir), "--val-dir", str(options.val_dir),
            *CONFIGS[config], *train_flags, "--seed", str(seed)]


def report(options: argparse.Namespace) -> str:
    """The Markdown table of every finished run of --configs (also written to <output-dir>/summary.md)."""
    rows = []
    for config in options.configs:
        paths = sorted((options.output_dir / config).glob("seed*_results.json"))
        scores = [final_scores(json.loads(path.read_text())) for path in paths]
        if scores:
            rows.append([config, mean_std([run["val"] for run in scores]), mean_std([run["test"] for run in scores]),
                         f"{statistics.fmean(run['wall_seconds'] for run in scores) / 60:.1f}", len(scores)])
    table = markdown_table(["configuration", "validation (final)", "10 % test (final)", "min per run", "seeds"], rows)
    options.output_dir.mkdir(parents=True, exist_ok=True)
    (options.output_dir / "summary.md").write_text(table + "\n")
    return table


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Run every configuration and seed not yet finished; return the table."""
    options, train_flags = parse_args(argv)
    if "frozen_224" in options.configs:
        train_frozen_heads(options)
    jobs = [(config, seed) for config in options.configs if CONFIGS[config] is not None for seed in options.seeds]

    def run(job: tuple[str, int]) -> dict:
        config, seed = job
        return train_and_score(finetune_flags(config, seed, options, train_flags), options.output_dir / config,
                               f"seed{seed}", options, keep_weights=False)

    side_by_side(run, jobs, options.jobs)
    table = report(options)
    print(table)
    return table


if __name__ == "__main__":
    main()
