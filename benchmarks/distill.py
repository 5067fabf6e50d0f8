"""Distillation through attention (DeiT) on 225 photos: can a ViT student beat its CNN teacher here?

    python benchmarks/distill.py --students hybrid vit --kinds hard soft --jobs 2 --threads 1   # train, then report
    python benchmarks/distill.py --output-dir benchmarks/results/distill                        # the archive's table

Touvron et al. (2021) train a ViT on ImageNet-1k alone and beat its convnet teacher through a distillation token:
a second token whose head learns the teacher's predictions (``going_modular.training.distillation``). Here, at the
data sweep's scale (benchmarks/data_sweep.py: 96 px, 1,400 steps, its chosen learning rates), for each seed:

    teacher   ResNet-18 from scratch on the 225 photos with the sweep's recipe (its 225-photo point, retrained with
              its weights kept): <output-dir>/teacher/n225_seed<seed>; with --teacher-model vit_ti_16_augreg, the
              pretrained ViT-Ti/16 fine-tuned on them ("not from scratch"): <output-dir>/teacher_vit_ti_16_augreg/,
              its students in <student>_<kind>_pretrained-teacher/
    students  the plain and the hybrid ViT with the distillation token, hard or soft, taught by that seed's
              teacher: <output-dir>/<student>_<kind>/n225_seed<seed>

Each student is scored on the validation (391) and test (75) photos three ways: its class head, its distillation
head and their average (its prediction), with its agreement with the teacher and the photos one of them gets right
and the other wrong (``<name>_heads.json``). The table adds the teacher and each student trained without a teacher
(the data sweep's runs, from benchmarks/results/figure4). ``--label`` names a variant (other flags after ``--``),
``--archive DIR`` copies results without per-step lists, as benchmarks/results/distill holds this project's runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

import torch

from going_modular import data_setup, model_builder, utils
from going_modular.training import distillation, recipe, validation_split
from data_sweep import MODELS, Point, archive, resolve_folders, run_flags
from training_runs import (add_run_options, check_run_options, final_scores, markdown_table, mean_std,
                           split_train_flags, train_and_score)

ROOT = Path(__file__).resolve().parents[1]
LEARNING_RATES = {"resnet18": "5e-4", "vit": "3e-4", "hybrid": "1.25e-4"}  # the data sweep's choice at 225 photos
SWEEP_EPOCHS = recipe.TRAINING_RECIPES["small-data"]["epochs"] // 2  # 100 epochs of 14 steps: 1,400 steps
PRETRAINED_TEACHER = "vit_ti_16_augreg"  # "not from scratch": ViT-Ti/16 fine-tuned at 224 px (--recipe finetune)
NOT_FROM_SCRATCH = "ViT-Ti/16 teacher (not from scratch)"  # its students' rows
NO_TEACHER = ROOT / "benchmarks" / "results" / "figure4"  # the sweep's runs: each student without a teacher


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple[argparse.Namespace, list[str]]:
    """This script's options, and the students' extra train flags after ``--``."""
    own, student_flags = split_train_flags(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--students", nargs="*", default=[], choices=("vit", "hybrid"), help="None: only report.")
    parser.add_argument("--kinds", nargs="+", default=["hard", "soft"], choices=(*distillation.DISTILLATION_KINDS, "none"),
                        help="none: the student alone, with the same flags (a variant's control).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="One teacher and student per seed.")
    parser.add_argument("--epochs", type=int, default=SWEEP_EPOCHS,
                        help="The students' epochs of the 225 photos (14 steps each); the teachers keep 100.")
    parser.add_argument("--photos", type=int, default=225, help="Training photos (--train-subset of the 10 %% split).")
    parser.add_argument("--teacher-model", default="resnet18", choices=("resnet18", PRETRAINED_TEACHER),
                        help="resnet18: from scratch with the sweep's recipe; vit_ti_16_augreg: the pretrained ViT-Ti/16 "
                             "fine-tuned on the same photos (--recipe finetune, 224 px), the 'not from scratch' row.")
    parser.add_argument("--label", default="", help="Appended to each student's folder name: a variant's runs.")
    parser.add_argument("--archive", type=Path, help="Copy every finished run's results (and scores) here.")
    parser.add_argument("--data-dir", type=Path, help="The 10 %% split (train/, test/); None: the course's.")
    parser.add_argument("--val-dir", type=Path, help="Its validation photos; None: the course's (validation_split).")
    add_run_options(parser, Path(tempfile.gettempdir()) / "distill")
    options = parser.parse_args(own)
    check_run_options(parser, options)
    options.larger = False
    options.batch_size, options.image_size = 16, 96
    return options, student_flags


def teacher_folder(options: argparse.Namespace) -> Path:
    return options.output_dir / ("teacher" if options.teacher_model == "resnet18" else f"teacher_{options.teacher_model}")


def teacher_run(point: Point, seed: int, options: argparse.Namespace) -> dict:
    """Seed ``seed``'s teacher: trained (weights kept), resumed, or read when finished. The ResNet-18 keeps the sweep's
    schedule whatever the students' ``--epochs``, so that every student of a seed has the same teacher; the
    pretrained ViT-Ti/16 is fine-tuned as the finetune recipe does, on the same photos."""
    if options.teacher_model == "resnet18":
        flags = run_flags(dataclasses.replace(point, epochs=SWEEP_EPOCHS), seed,
                          [*MODELS["resnet18"], "--lr", LEARNING_RATES["resnet18"], "--num-workers", "0"], options)
    else:
        flags = ["--recipe", "finetune", "--model", options.teacher_model, "--data-dir", str(options.data_dir),
                 "--train-subset", str(point.subset), "--val-dir", str(point.val_dir), "--seed", str(seed),
                 "--num-workers", "0"]
    return train_and_score(flags, teacher_folder(options), f"n{point.photos}_seed{seed}", options)


def student_run(point: Point, seed: int, student: str, kind: str, student_flags: Sequence[str],
                options: argparse.Namespace) -> dict:
    """One student, taught by its seed's teacher, then scored head by head (``score_heads``); kind "none": alone."""
    teacher = teacher_folder(options) / f"n{point.photos}_seed{seed}.pth"
    flags = [*MODELS[student], "--lr", LEARNING_RATES[student], "--num-workers", "0", *student_flags]
    if kind != "none":
        flags += ["--distill", kind, "--teacher", str(teacher), "--teacher-model", options.teacher_model]
    label = options.label + ("" if options.teacher_model == "resnet18" or kind == "none" else "_pretrained-teacher")
    folder, name = options.output_dir / f"{student}_{kind}{label}", f"n{point.photos}_seed{seed}"
    scores = train_and_score(run_flags(point, seed, flags, options), folder, name, options)
    heads = folder / f"{name}_heads.json"
    if kind != "none" and not heads.exists():
        results = json.loads((folder / f"{name}_results.json").read_text())
        utils.save_json(score_heads(results, folder / f"{name}.pth", teacher, point), heads)
    return scores


def _images(folder: Path, image_size: int, class_names: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every photo of ``folder`` as the course evaluates it: (images, labels, <class>/<file> names)."""
    dataset = validation_split.create_validation_dataloader(folder, data_setup.eval_transforms(image_size), 64,
                                                            class_names, num_workers=0).dataset
    images, labels = zip(*(dataset[index] for index in range(len(dataset))))
    names = [str(Path(path).relative_to(folder)) for path, _ in dataset.samples]
    return torch.stack(images), torch.tensor(labels), names


def score_heads(results: dict, student_path: Path, teacher_path: Path, point: Point) -> dict:
    """Accuracy of the student's class head, distillation head and average, and of the teacher, on the validation
    and test photos; how often student and teacher agree; the photos only one of them gets right."""
    config, class_names = results["config"], results["class_names"]
    student = model_builder.create_vit(config["model"], len(class_names), distillation_token=True,
                                       **recipe.model_overrides(config))
    utils.load_model(student, student_path)
    teacher = distillation.load_teacher(config.get("teacher_model", "resnet18"), teacher_path, len(class_names),
                                        "cpu").eval()
    scores = {}
    for split, folder in (("val", point.val_dir), ("test", point.test_dir)):
        images, labels, names = _images(folder, config["image_size"], class_names)
        with torch.inference_mode():
            logits = {**distillation.head_logits(student, images), "teacher": teacher(images)}
        right = {head: value.argmax(1) == labels for head, value in logits.items()}
        scores[split] = {
            **{head: value.float().mean().item() for head, value in right.items()},
            "agreement": (logits["average"].argmax(1) == logits["teacher"].argmax(1)).float().mean().item(),
            "student_only": [name for name, s, t in zip(names, right["average"], right["teacher"]) if s and not t],
            "teacher_only": [name for name, s, t in zip(names, right["average"], right["teacher"]) if t and not s]}
    return scores


def _final(folder: Path, photos: str = "*") -> list[dict]:
    """The final scores of every finished run in ``folder`` (of ``photos`` training photos)."""
    return [final_scores(json.loads(path.read_text())) for path in sorted(folder.glob(f"n{photos}_seed*_results.json"))]


def report(output_dir: Path) -> str:
    """The table: the teacher, each student without a teacher (the sweep's runs), then every distilled variant in
    ``output_dir``, head by head (mean ± std over seeds, validation then test)."""
    header = ["model", "validation", "10 % test", "class head (val)", "distillation head (val)",
              "agrees with teacher (val)", "student right, teacher wrong / the reverse (val)", "seeds"]
    rows = []
    for folder, name in (("teacher", "ResNet-18 teacher"), (f"teacher_{PRETRAINED_TEACHER}",
                                                            "ViT-Ti/16 teacher, pretrained and fine-tuned")):
        teacher = _final(output_dir / folder)
        if teacher:
            rows.append([name, mean_std([run["val"] for run in teacher]), mean_std([run["test"] for run in teacher]),
                         "", "", "", "", len(teacher)])
    for student in ("vit", "hybrid"):
        alone = _final(NO_TEACHER / student, photos="225")
        rows.append([f"{student}, no teacher", mean_std([run["val"] for run in alone]),
                     mean_std([run["test"] for run in alone]), "", "", "", "", len(alone)])
    for folder in sorted(path for path in output_dir.iterdir() if path.is_dir() and not path.name.startswith("teacher")):
        heads = [json.loads(path.read_text())["val"] for path in sorted(folder.glob("*_heads.json"))]
        runs = _final(folder)
        if not runs:
            continue
        counts = ", ".join(f"{len(run['student_only'])}/{len(run['teacher_only'])}" for run in heads)
        by_head = [mean_std([run[key] for run in heads]) for key in ("class", "distillation", "agreement")] + [counts]
        name = ", ".join(part.replace("none", "no teacher").replace("pretrained-teacher", NOT_FROM_SCRATCH)
                         for part in folder.name.split("_"))  # hybrid, hard, 300ep
        rows.append([name, mean_std([run["val"] for run in runs]),
                     mean_std([run["test"] for run in runs]), *(by_head if heads else [""] * 4), len(runs)])
    return markdown_table(header, rows)


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Train the teachers and students not yet finished, then print and return the table."""
    options, student_flags = parse_args(argv)
    if options.students:
        resolve_folders(options)
        point = Point(options.photos, options.data_dir / "train", options.photos, options.epochs, options.val_dir,
                      options.data_dir / "test")
        with ThreadPoolExecutor(max_workers=options.jobs) as pool:  # teachers first; a student waits for its own
            teachers = {seed: pool.submit(teacher_run, point, seed, options) for seed in options.seeds}

            def student(job: tuple[str, str, int]) -> dict:
                teachers[job[2]].result()
                return student_run(point, job[2], *job[:2], student_flags, options)
            jobs = [(name, kind, seed) for name in options.students for kind in options.kinds for seed in options.seeds]
            for future in [pool.submit(student, job) for job in jobs]:
                future.result()
    table = report(options.output_dir)
    if options.archive is not None:
        archive(options.output_dir, options.archive)
        for path in options.output_dir.glob("*/*_heads.json"):
            (options.archive / path.parent.name / path.name).write_text(path.read_text())
    print(table)
    return table


if __name__ == "__main__":
    main()
