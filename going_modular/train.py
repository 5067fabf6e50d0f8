"""Train a ViT preset on an image-folder dataset from the command line.

    python -m going_modular.train --model vit_ti_16 --epochs 1

With no --data-dir it uses pizza_steak_sushi in the course's data directory, downloading it when it
is missing. It writes, in --output-dir: the model's weights (.pth), a results JSON (per-epoch metrics,
per-step learning rate, loss and gradient norm, configuration, seed, device, wall time) and a
loss-curve PNG. ``--help`` lists every flag.

After every epoch it writes a checkpoint (``<name>_checkpoint.pth``, see ``checkpoint``), removed once
the run has finished. If the run is interrupted, the same command with ``--resume`` continues it from
there, and ends with the same weights and results as a run that was never interrupted.

A mistake on the command line or in the data (a missing folder, no connection for the download, a
flag out of range, a checkpoint from other settings) ends with one line, ``error: ...``, saying what to
do, and exit status 2.

The same command trains data-parallel on several GPUs (or CPU processes) when started by torchrun:

    torchrun --nproc_per_node=4 -m going_modular.train --model vit_s_16 --epochs 100

Each process trains on its shard of every epoch (``distributed``); --batch-size is per process. The
metrics are those of the whole dataset, and only rank 0 prints and writes files.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.utils.data import DataLoader

from going_modular import data_setup, engine, model_builder, utils
from going_modular.common import settings
from going_modular.training import checkpoint, distributed, recipe, validation_split
from going_modular.figures.plotting import plot_loss_curves


# Mistakes a person can make on the command line or with the data: reported in one line, exit status 2.
USER_ERRORS = (
    FileNotFoundError, PermissionError, ConnectionError, data_setup.DownloadError, data_setup.DataError,
    checkpoint.ResumeError, utils.CheckpointError,
)
# Settings that may change between a run and its resumption: they change where the outputs go and how
# fast it runs, not what it computes.
RESUMABLE_CHANGES = ("resume", "device", "num_workers", "preload_eval", "output_dir", "model_name")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``error: ...`` and where to look, exit status 2."""

    def error(self, message: str) -> None:
        _exit_with_error(f"{message} (python -m going_modular.train --help lists every flag)")


def _exit_with_error(message: str) -> None:
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one process speaks for all
        print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


# The default of a flag that --recipe sets: absent after parsing unless given, then filled from the recipe.
_FROM_RECIPE = argparse.SUPPRESS


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in --help (flags set by --recipe have none of their own), and the epilog as written."""


def _recipes_epilog() -> str:
    """The flags each --recipe stands for, one recipe per paragraph."""
    paragraphs = []
    for name, values in recipe.TRAINING_RECIPES.items():
        lines = textwrap.wrap(" ".join(recipe_as_flags(values)), width=100, break_on_hyphens=False)
        paragraphs.append(f"--recipe {name} is:\n  " + "\n  ".join(lines))
    return "\n\n".join(paragraphs)


def recipe_as_flags(values: dict[str, Any]) -> list[str]:
    """The command-line flags that give a recipe's values (a ``recipe.TRAINING_RECIPES`` entry).

    None means "off" for --stem-channels and --max-grad-norm (written as 0) and "the preset's own" for
    --patch-size and --num-transformer-layers (left out).
    """
    flags = []
    for name, value in values.items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        elif value is None:
            flags += [flag, "0"] if name in ("stem_channels", "max_grad_norm") else []
        else:
            flags += [flag, *map(str, value if isinstance(value, list) else [value])]
    return flags


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse and check the command line (``argv`` defaults to ``sys.argv[1:]``).

    A flag out of range ends the program with ``error: ...`` and exit status 2.
    """
    parser = _Parser(
        prog="python -m going_modular.train",
        description="Train a Vision Transformer (Dosovitskiy et al., 2020) on an image-folder dataset. With no flags "
                    "it trains the course's small-data recipe on pizza_steak_sushi (see --recipe).",
        epilog=_recipes_epilog(),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--recipe", default=recipe.DEFAULT_TRAINING_RECIPE, choices=sorted(recipe.TRAINING_RECIPES),
                        help="The configuration the flags below start from; any flag given overrides it. small-data: "
                             "the course's recipe for the 225 photos of pizza_steak_sushi (a hybrid ViT, chosen on "
                             "the validation set; numbers in benchmarks/README.md, 'On the validation set'). ztm: the "
                             "ZTM course's ViT-B/16 run. Their values are listed at the end of --help.")
    parser.add_argument("--model", default=_FROM_RECIPE, choices=sorted(model_builder.VIT_PRESETS),
                        help="ViT preset: Table 1's vit_b_16/vit_l_16/vit_h_14, or the small vit_ti_16/vit_s_16 for a CPU. "
                             "Its width and heads; the recipe's --patch-size, --num-transformer-layers and "
                             "--stem-channels still apply (--recipe ztm keeps the preset's own).")
    parser.add_argument("--epochs", type=int, default=_FROM_RECIPE, help="Passes over the training data.")
    parser.add_argument("--batch-size", type=int, default=_FROM_RECIPE, help="Images per batch (per process under torchrun).")
    parser.add_argument("--drop-last", action=argparse.BooleanOptionalAction, default=_FROM_RECIPE,
                        help="Leave out each epoch's last, incomplete training batch (225 images in batches of 32 end "
                             "with one of a single image). Always on under torchrun.")
    parser.add_argument("--lr", type=float, default=_FROM_RECIPE, help="Peak learning rate of AdamW (after any warmup).")
    parser.add_argument("--weight-decay", type=float, default=_FROM_RECIPE,
                        help="AdamW's decoupled weight decay on weight matrices; biases, norms, class token and "
                             "position embedding get none (the paper's Table 3: 0.1 for JFT pre-training).")
    parser.add_argument("--image-size", type=int, default=_FROM_RECIPE, help="Images are resized to this height and width.")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="A folder with train/<class>/ and test/<class>/ images. "
                             "Default: pizza_steak_sushi in the course data directory, downloaded when missing.")
    parser.add_argument("--val-dir", default=None,
                        help="Validation images, <dir>/<class>/<image>, evaluated after every epoch (val_loss and "
                             "val_acc in the results): the data to choose settings by, so that the test set reports "
                             "a chosen configuration once. 'auto': pizza_steak_sushi's validation split, 391 photos of "
                             "the 20 %% split in neither its train nor test set (going_modular.training.validation_split; "
                             "downloaded when missing).")
    parser.add_argument("--output-dir", type=Path, default=Path("models"),
                        help="Where the model, results, plot and checkpoint go (in Colab, a Google Drive folder "
                             "survives a disconnected runtime).")
    parser.add_argument("--model-name", default=None, help="File name stem of the outputs; the preset's name when not given.")
    parser.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                        help="Continue an interrupted run from its checkpoint: by default <output-dir>/<model-name>"
                             "_checkpoint.pth; or give the checkpoint file. Give the same other flags as the first "
                             "run: a different setting is refused.")
    parser.add_argument("--seed", type=int, default=42, help="Random seed for weights, shuffling and dropout.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps ...; the best available when not given.")
    parser.add_argument("--num-workers", type=int, default=data_setup.NUM_WORKERS, help="Data-loading worker processes.")
    parser.add_argument("--preload-eval", action=argparse.BooleanOptionalAction, default=True,
                        help="Resize and crop the test and validation images once and keep them in memory as tensors "
                             "(the same batches, without decoding every photo again each epoch; "
                             "data_setup.preloaded). --no-preload-eval for an evaluation set too large for memory.")
    parser.add_argument("--patch-size", type=int, default=_FROM_RECIPE, help="Override the preset's patch size P.")
    parser.add_argument("--num-transformer-layers", type=int, default=_FROM_RECIPE,
                        help="Override the preset's depth L (Table 1), e.g. 6 for a smaller model on little data.")
    parser.add_argument("--stem-channels", type=int, nargs="+", default=_FROM_RECIPE, metavar="C",
                        help="The paper's hybrid model (section 3.1): a convolutional stem with these channels (one "
                             "3x3 stride-2 convolution, BatchNorm and ReLU per number), whose feature map is cut into "
                             "--patch-size patches (1: one token per position), e.g. --stem-channels 24 48 96 192 "
                             "--patch-size 1. 0: no stem (the image itself is cut into patches).")
    parser.add_argument("--pool", default=_FROM_RECIPE, choices=("cls", "mean"),
                        help="Classify from the class token (the paper) or the mean of the patch tokens (appendix D.3).")
    parser.add_argument("--dropout", type=float, default=_FROM_RECIPE,
                        help="Dropout after the position embedding and after every dense layer of the encoder "
                             "(appendix B.1; Table 3: 0.1 for ImageNet).")
    parser.add_argument("--drop-path-rate", type=float, default=_FROM_RECIPE, help="Stochastic depth rate of the last block.")
    parser.add_argument("--warmup-epochs", type=int, default=_FROM_RECIPE,
                        help="Epochs of linear learning-rate warmup. With --epochs but not this flag, the recipe's "
                             "share of warmup epochs is kept (rounded).")
    parser.add_argument("--lr-decay", default=_FROM_RECIPE, choices=recipe.DECAY_SCHEDULES,
                        help="Learning-rate decay after warmup, stepped per optimisation step.")
    parser.add_argument("--label-smoothing", type=float, default=_FROM_RECIPE, help="Label smoothing of the cross-entropy.")
    parser.add_argument("--augment", default=_FROM_RECIPE, choices=("none", "crop-flip", *data_setup.AUGMENTATION_POLICIES),
                        help="none: the course's resize only; crop-flip: random resized crop and flip; "
                             "trivialaugment/randaugment: crop, flip and that policy (with [-1, 1] normalisation).")
    parser.add_argument("--randaugment-magnitude", type=int, default=9,
                        help="Strength of every RandAugment operation with --augment randaugment (0-30).")
    parser.add_argument("--mixup-alpha", type=float, default=0.0,
                        help="MixUp: blend pairs of training images and their labels (0: off; DeiT uses 0.8).")
    parser.add_argument("--cutmix-alpha", type=float, default=0.0,
                        help="CutMix: paste a patch of one training image into another (0: off; DeiT uses 1.0). "
                             "With both, each batch gets one of the two at random.")
    parser.add_argument("--repeated-augmentation", type=int, default=1, metavar="R",
                        help="Repeated augmentation (DeiT): each epoch takes 1/R of the training photos, each R times "
                             "in a row under different augmentations, so a batch holds R views of its photos; as many "
                             "steps per epoch as without (1: off). Not under torchrun.")
    parser.add_argument("--ema-decay", type=float, default=0.0,
                        help="Keep an exponential moving average of the weights, updated after every optimisation "
                             "step with this decay (e.g. 0.99), and evaluate and save it instead of the raw weights "
                             "(0: off).")
    parser.add_argument("--max-grad-norm", type=float, default=_FROM_RECIPE,
                        help="Clip the global gradient norm (the paper: 1.0); 0 turns clipping off.")
    parser.add_argument("--accumulation-steps", type=int, default=1, help="Batches whose gradients add up before each step.")
    parser.add_argument("--amp", action="store_true",
                        help="Mixed precision: bfloat16 on CPUs and GPUs of compute capability 8.0 and up, float16 "
                             "with loss scaling on older GPUs (Colab's T4).")
    parser.add_argument("--max-batches", type=int, default=None, help="Stop each epoch after this many batches (a quick run).")
    args = parser.parse_args(argv)
    _apply_recipe(args, recipe.TRAINING_RECIPES[args.recipe])
    if args.stem_channels == [0]:
        args.stem_channels = None
    problem = _check_args(args)
    if problem:
        parser.error(problem)
    return args


def _apply_recipe(args: argparse.Namespace, values: dict[str, Any]) -> None:
    """Fill every flag not given on the command line from the recipe.

    The recipe's warmup is a share of its epochs: with only --epochs given it keeps that share
    (``recipe.scaled_warmup_epochs``: 5 of 200 epochs becomes 1 of 20).
    """
    if "epochs" in vars(args) and "warmup_epochs" not in vars(args):
        args.warmup_epochs = recipe.scaled_warmup_epochs(values, args.epochs)
    for name, value in values.items():
        vars(args).setdefault(name, value)  # a flag given on the command line wins over the recipe


def _check_args(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with the parsed flags, or None."""
    at_least_one = ("epochs", "batch_size", "image_size", "accumulation_steps", "patch_size", "num_transformer_layers",
                    "max_batches", "repeated_augmentation")
    for name in at_least_one:
        if getattr(args, name) is not None and getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}"
    rules = [  # (flag, whether its value is allowed, the rule)
        ("lr", args.lr > 0, "must be positive"),
        ("weight_decay", args.weight_decay >= 0, "must be at least 0"),
        ("label_smoothing", 0 <= args.label_smoothing < 1, "must be at least 0 and below 1"),
        ("drop_path_rate", 0 <= args.drop_path_rate < 1, "must be at least 0 and below 1"),
        ("dropout", 0 <= args.dropout < 1, "must be at least 0 and below 1"),
        ("randaugment_magnitude", 0 <= args.randaugment_magnitude <= 30, "must be between 0 and 30"),
        ("max_grad_norm", args.max_grad_norm is None or args.max_grad_norm >= 0,
         "must be at least 0 (0 turns clipping off)"),
        ("warmup_epochs", 0 <= args.warmup_epochs <= args.epochs, f"must be between 0 and --epochs ({args.epochs})"),
        ("num_workers", args.num_workers >= 0, "must be at least 0"),
        ("mixup_alpha", args.mixup_alpha >= 0, "must be at least 0 (0 turns MixUp off)"),
        ("cutmix_alpha", args.cutmix_alpha >= 0, "must be at least 0 (0 turns CutMix off)"),
        ("ema_decay", 0 <= args.ema_decay < 1, "must be at least 0 (off) and below 1"),
    ]
    for name, allowed, rule in rules:
        if not allowed:
            return f"--{name.replace('_', '-')} {rule}, got {getattr(args, name)}"
    if args.stem_channels is not None and min(args.stem_channels) < 1:
        return f"--stem-channels must all be at least 1, got {args.stem_channels}"
    patch_size = args.patch_size or model_builder.VIT_PRESETS[args.model]["patch_size"]
    token_side = patch_size * 2 ** len(args.stem_channels or ())  # pixels a side that one token covers
    if args.image_size % token_side:
        fitting = max(token_side, args.image_size // token_side * token_side)
        what = (f"the patch size {patch_size}" if token_side == patch_size else
                f"{token_side} (the stem's stride {token_side // patch_size} x the patch size {patch_size})")
        return (f"--image-size {args.image_size} is not divisible by {what}: the image must cut into whole patches. "
                f"Use --image-size {fitting} (or another multiple of {token_side}) or another --patch-size")
    if args.repeated_augmentation > 1 and distributed.launched_by_torchrun():
        return ("--repeated-augmentation works in a single process; under torchrun every process shuffles its own "
                "shard (DistributedSampler). Leave it at 1, or train without torchrun")
    if args.val_dir == "auto" and args.data_dir is not None:
        return ("--val-dir auto is the validation split of the course's pizza_steak_sushi; with your own --data-dir, "
                "give --val-dir the folder of your validation images")
    if args.device is not None:
        return _device_problem(args.device)
    return None


def _device_problem(name: str) -> Optional[str]:
    try:
        device = torch.device(name)
    except RuntimeError:
        return f"--device {name!r} is not a device PyTorch knows; use cpu, cuda, cuda:1 or mps, or leave it out"
    if device.type == "cuda" and not torch.cuda.is_available():
        return f"--device {name}: no CUDA GPU is available here; leave --device out to use the best available device"
    return None


def _resolve_data_dirs(args: argparse.Namespace) -> tuple[Path, Optional[Path]]:
    """(data folder, validation folder or None), downloading the course's data when it is asked for and missing."""
    if args.data_dir is None:
        data_dir = data_setup.download_data(data_setup.PIZZA_STEAK_SUSHI_URL, "pizza_steak_sushi")
    elif not args.data_dir.is_dir():
        raise FileNotFoundError(f"--data-dir {args.data_dir} does not exist. Give a folder with train/ and test/ inside.")
    else:
        data_dir = args.data_dir
    if args.val_dir is None:
        return data_dir, None
    if args.val_dir == "auto":
        return data_dir, validation_split.download_validation_split()
    if not Path(args.val_dir).is_dir():
        raise FileNotFoundError(f"--val-dir {args.val_dir} does not exist. Give a folder of <class>/<image> files.")
    return data_dir, Path(args.val_dir)


def _transforms(augment: str, image_size: int, magnitude: int) -> tuple[Callable, Callable]:
    """(train, test) transforms for the --augment choice."""
    if augment == "none":
        transform = data_setup.manual_transforms(image_size)
        return transform, transform
    policy = None if augment == "crop-flip" else augment
    return (data_setup.train_transforms(image_size, policy, randaugment_magnitude=magnitude),
            data_setup.eval_transforms(image_size))


def model_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``model_builder.create_vit`` keyword arguments of a run's settings (a recipe, or the parsed flags).

    ``values`` holds the flags' names: image_size, drop_path_rate, pool, dropout, and patch_size,
    num_transformer_layers and stem_channels (None keeps the preset's own). Notebook 05 builds the
    small-data recipe's model with ``create_vit(recipe["model"], num_classes, **model_overrides(recipe))``.
    """
    overrides = {"img_size": values["image_size"], "drop_path_rate": values["drop_path_rate"], "pool": values["pool"],
                 "embedding_dropout": values["dropout"], "proj_dropout": values["dropout"],
                 "mlp_dropout": values["dropout"]}
    for name in ("patch_size", "num_transformer_layers", "stem_channels"):
        if values.get(name) is not None:
            overrides[name] = values[name]
    return overrides


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Run the command line and return the results dictionary that it also writes as JSON.

    Under torchrun every process returns the same dictionary; only rank 0 writes it. A user error (see
    ``USER_ERRORS``) prints one line and exits with status 2; any other error keeps its traceback.
    """
    args = parse_args(argv)
    try:
        context = distributed.init_from_env(args.device)
        try:
            return _train(args, context)
        finally:
            distributed.cleanup()
    except USER_ERRORS as error:
        _exit_with_error(str(error))


class _Optimisation(NamedTuple):
    """Everything that changes the weights, and is saved in a checkpoint besides them."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    grad_scaler: Optional[torch.amp.GradScaler]
    averaged_model: Optional[nn.Module]


def _train(args: argparse.Namespace, context: Optional[distributed.DistributedContext]) -> dict:
    if context is not None:
        device = context.device
    else:
        device = torch.device(args.device) if args.device else utils.get_device()
    main_process = distributed.is_main_process()
    name = args.model_name or args.model
    world_size = context.world_size if context is not None else 1
    config = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    checkpoint_file = checkpoint.checkpoint_path(args.output_dir, name)
    resumed = _checkpoint_to_resume(args, checkpoint_file, {**config, "world_size": world_size})
    if resumed is not None:
        checkpoint_file = Path(args.resume) if args.resume != "auto" else checkpoint_file
    data_dir, val_dir = _shared_data_dirs(args, context)

    utils.set_seeds(args.seed)  # the same initial weights in every process (DDP also copies rank 0's)
    train_dataloader, test_dataloader, val_dataloader, class_names = _dataloaders(args, data_dir, val_dir)
    num_train_images, num_test_images = len(train_dataloader.dataset), len(test_dataloader.dataset)
    model = model_builder.create_vit(args.model, num_classes=len(class_names), **model_overrides(vars(args))).to(device)
    trained_model = model
    if context is not None:
        utils.set_seeds(args.seed + context.rank)  # different augmentation and dropout in each process
        train_dataloader, test_dataloader = distributed.shard_dataloaders(
            train_dataloader, test_dataloader, context, args.seed)
        if val_dataloader is not None:
            val_dataloader = distributed.shard_eval_dataloader(val_dataloader, context)
        # The plain ViT has no buffers. The hybrid's BatchNorm statistics are broadcast from rank 0 with every
        # training forward pass, so that every process evaluates with the same ones.
        trained_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=any(True for _ in model.buffers()))
    optimisation = _optimisation(args, model, train_dataloader, device)

    record: dict[str, Any] = {"metrics": None, "steps": {"lr": [], "loss": [], "grad_norm": []},
                              "resumed_after_epochs": [], "training_seconds": 0.0}
    start_epoch = 1
    if resumed is not None:
        record.update(resumed["results"])
        start_epoch = resumed["epoch"] + 1
        record["resumed_after_epochs"] = [*record["resumed_after_epochs"], resumed["epoch"]]
        if main_process:
            print(f"Resuming from {settings.display_path(checkpoint_file)}: {resumed['epoch']} of {args.epochs} "
                  f"epochs were done.")
        checkpoint.restore(resumed, model=model, **optimisation._asdict(),
                           rank=context.rank if context is not None else 0)  # last: it sets the random generators

    if main_process:
        processes = f" x {context.world_size} processes ({context.backend})" if context is not None else ""
        validation = f", {len(val_dataloader.dataset)} validation images" if val_dataloader is not None else ""
        print(f"Training {args.model} on {device}{processes} for {args.epochs} epochs: {num_train_images} train and "
              f"{num_test_images} test images from {settings.display_path(data_dir)}{validation}"
              + (f" (at most {args.max_batches} batches per epoch)" if args.max_batches else ""))
    seconds_before, start = record["training_seconds"], time.perf_counter()

    def record_step(step: engine.StepRecord) -> None:
        for key in record["steps"]:
            record["steps"][key].append(getattr(step, key))
        if optimisation.averaged_model is not None:
            optimisation.averaged_model.update_parameters(model)

    def write_checkpoint(epoch: int, history: engine.Results) -> None:
        record.update(metrics=history, training_seconds=seconds_before + time.perf_counter() - start)
        checkpoint.save_checkpoint(
            checkpoint_file, model=model, **optimisation._asdict(), epoch=epoch, results=record,
            config={**config, "world_size": world_size}, training_seconds=record["training_seconds"])

    history = engine.train(
        trained_model, train_dataloader, test_dataloader, optimisation.optimizer,
        nn.CrossEntropyLoss(label_smoothing=args.label_smoothing), args.epochs, device,
        scheduler=optimisation.scheduler, max_grad_norm=args.max_grad_norm or None,
        accumulation_steps=args.accumulation_steps, amp=args.amp, grad_scaler=optimisation.grad_scaler,
        max_batches=args.max_batches, val_dataloader=val_dataloader, eval_model=optimisation.averaged_model,
        start_epoch=start_epoch, results=record["metrics"], on_step_end=record_step, on_epoch_end=write_checkpoint,
    )
    results = {
        "metrics": history,
        "steps": record["steps"],
        "config": config,
        "class_names": class_names,
        "num_train_images": num_train_images,
        "num_test_images": num_test_images,
        "num_val_images": len(val_dataloader.dataset) if val_dataloader is not None else 0,
        "data_dir": str(data_dir),
        "val_dir": str(val_dir) if val_dir is not None else None,
        "device": str(device),
        "world_size": world_size,
        "seed": args.seed,
        "wall_time_seconds": round(seconds_before + time.perf_counter() - start, 2),
        "resumed_after_epochs": record["resumed_after_epochs"],
        "torch_version": torch.__version__,
        "model_path": str(args.output_dir / f"{name}.pth"),
    }
    if main_process:
        averaged_model = optimisation.averaged_model
        _write_outputs(averaged_model.module if averaged_model is not None else model, results, history, args, name,
                       device)
        checkpoint_file.unlink(missing_ok=True)  # the run is complete: its outputs replace the checkpoint
    return results


def _dataloaders(
    args: argparse.Namespace, data_dir: Path, val_dir: Optional[Path]
) -> tuple[DataLoader, DataLoader, Optional[DataLoader], list[str]]:
    """(train, test, validation or None, class names), with the --augment, --mixup-alpha/--cutmix-alpha and
    --repeated-augmentation choices."""
    train_transform, test_transform = _transforms(args.augment, args.image_size, args.randaugment_magnitude)
    mix = None
    if args.mixup_alpha or args.cutmix_alpha:
        num_classes = len(data_setup.image_folder(data_dir / "train", None, "train").classes)
        mix = data_setup.MixUpCutMix(num_classes, mixup_alpha=args.mixup_alpha, cutmix_alpha=args.cutmix_alpha)
    train_dataloader, test_dataloader, class_names = data_setup.create_dataloaders(
        data_dir / "train", data_dir / "test", train_transform, args.batch_size,
        num_workers=args.num_workers, test_transform=test_transform, drop_last=args.drop_last, train_collate_fn=mix,
        repeated_augmentation=args.repeated_augmentation,
    )
    val_dataloader = None
    if val_dir is not None:
        val_dataloader = validation_split.create_validation_dataloader(
            val_dir, test_transform, args.batch_size, class_names, num_workers=args.num_workers)
    if args.preload_eval:
        test_dataloader = data_setup.preloaded(test_dataloader)
        if val_dataloader is not None:
            val_dataloader = data_setup.preloaded(val_dataloader)
    return train_dataloader, test_dataloader, val_dataloader, class_names


def _optimisation(args: argparse.Namespace, model: nn.Module, train_dataloader: DataLoader,
                  device: torch.device) -> _Optimisation:
    """AdamW with its weight-decay groups, the learning-rate schedule, the gradient scaler and the weights' EMA."""
    optimizer = recipe.create_optimizer(model, lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(engine.num_batches(train_dataloader, args.max_batches) / args.accumulation_steps)
    scheduler = recipe.create_scheduler(
        optimizer, total_steps=steps_per_epoch * args.epochs, warmup_steps=steps_per_epoch * args.warmup_epochs,
        decay=args.lr_decay,
    )
    averaged_model = None
    if args.ema_decay:
        averaged_model = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema_decay), use_buffers=True)
    return _Optimisation(optimizer, scheduler, engine.make_grad_scaler(device, args.amp), averaged_model)


def _checkpoint_to_resume(args: argparse.Namespace, default_path: Path, config: dict) -> Optional[dict]:
    """The checkpoint ``--resume`` asks for, checked against this run's settings; None without --resume."""
    if args.resume is None:
        if default_path.exists():  # a new run would overwrite it after its first epoch
            raise checkpoint.ResumeError(
                f"{default_path} holds the checkpoint of an interrupted run. Add --resume to continue it, or "
                f"delete it (or choose another --output-dir or --model-name) to start a new run."
            )
        return None
    path = default_path if args.resume == "auto" else Path(args.resume)
    finished = args.output_dir / f"{args.model_name or args.model}_results.json"
    if not path.exists() and finished.exists():
        raise checkpoint.ResumeError(
            f"There is no checkpoint at {path}: the run finished (a finished run removes its checkpoint), and its "
            f"results are in {finished}. To train again, run without --resume."
        )
    state = checkpoint.load_checkpoint(path)
    differences = checkpoint.config_differences(state["config"], config, ignore=RESUMABLE_CHANGES)
    if differences:
        raise checkpoint.ResumeError(
            f"The checkpoint {path} was written with other settings, so resuming would not continue the same run: "
            f"{'; '.join(differences)}. Give the flags of the interrupted run, or start a new run without --resume."
        )
    return state


def _shared_data_dirs(args: argparse.Namespace,
                      context: Optional[distributed.DistributedContext]) -> tuple[Path, Optional[Path]]:
    """The data folders; under torchrun only rank 0 looks for them (and downloads), then tells the others."""
    if context is None:
        return _resolve_data_dirs(args)
    outcome = [None]
    if context.rank == 0:
        try:
            outcome[0] = _resolve_data_dirs(args)
        except Exception as error:  # every process must stop with rank 0's error, not wait for it forever
            outcome[0] = error
    torch.distributed.broadcast_object_list(outcome, src=0)
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


def _write_outputs(model: nn.Module, results: dict, history: dict, args: argparse.Namespace, name: str,
                   device: torch.device) -> None:
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model_path = utils.save_model(model, args.output_dir, f"{name}.pth")
    utils.save_json(results, args.output_dir / f"{name}_results.json")
    figure = plot_loss_curves(history, args.output_dir / f"{name}_loss_curves.png",
                              title=f"{args.model} on {device}, {args.epochs} epochs")
    plt.close(figure)
    print(f"Wrote {settings.display_path(model_path)}, {name}_results.json and {name}_loss_curves.png to "
          f"{settings.display_path(args.output_dir)}")


if __name__ == "__main__":
    main()
