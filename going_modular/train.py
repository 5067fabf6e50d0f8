"""Train a ViT (or the CNN it is measured against) on an image-folder dataset, pizza_steak_sushi by default.

    python -m going_modular.train --model vit_ti_16 --epochs 1
    python -m going_modular.train --recipe finetune --val-dir auto     # the pretrained ViT-Ti/16, every weight
    python -m going_modular.train --distill hard --teacher models/resnet18.pth   # DeiT's distillation token
    torchrun --nproc_per_node=4 -m going_modular.train --model vit_s_16 --epochs 100   # data-parallel

It writes the weights, a results JSON and a loss-curve PNG to --output-dir, and after every epoch a
checkpoint that ``--resume`` continues from to the same end. A mistake in the flags or the data ends with
one line, ``error: ...``, exit status 2. Under torchrun --batch-size is per process; only rank 0 writes."""
from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

import matplotlib.pyplot as plt
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader

from going_modular import data_setup, engine, model_builder, pretrained, utils
from going_modular.common import settings
from going_modular.training import checkpoint, distillation, distributed, recipe, validation_split
from going_modular.training.data import (MixUpCutMix, RepeatedAugmentationSampler, SubsetSampler, balanced_subset,
                                         preloaded)
from going_modular.figures.plotting import plot_loss_curves


# Mistakes a person can make on the command line or with the data: reported in one line, exit status 2.
USER_ERRORS = (FileNotFoundError, PermissionError, ConnectionError, data_setup.DownloadError, data_setup.DataError,
               checkpoint.ResumeError, utils.CheckpointError, pretrained.PretrainedWeightsUnavailableError)
# Settings that may change between a run and its resumption: where the outputs go and how fast it runs.
RESUMABLE_CHANGES = ("resume", "device", "num_workers", "preload_eval", "output_dir", "model_name")
# The CNN that benchmarks/data_sweep.py sets against the ViT (section 4.3): torchvision's ResNet-18 from scratch, the
# smallest standard ResNet (11.2 M parameters and 0.67 GFLOPs a 96-pixel image; the hybrid ViT 2.9 M and 0.24).
CNN_MODELS = {"resnet18": torchvision.models.resnet18}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``error: ...`` and where to look, exit status 2."""

    def error(self, message: str) -> NoReturn:
        _exit_with_error(f"{message} (python -m going_modular.train --help lists every flag)")


def _exit_with_error(message: str) -> NoReturn:
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one process speaks for all
        print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in --help (the recipe's too), and the epilog as written."""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse and check the command line (``sys.argv[1:]`` by default); --recipe gives the other flags' defaults."""
    recipe_parser = _Parser(add_help=False)  # read first: the recipe's values are the full parser's defaults
    recipe_parser.add_argument(
        "--recipe", choices=sorted(recipe.TRAINING_RECIPES), default=recipe.DEFAULT_TRAINING_RECIPE,
        help="The other flags' defaults (listed below). small-data: the course's recipe for pizza_steak_sushi "
             "(benchmarks/README.md); ztm: the ZTM course's ViT-B/16 run.")
    values = recipe.TRAINING_RECIPES[recipe_parser.parse_known_args(argv)[0].recipe]
    parser = _parser(recipe_parser, values)
    parser.set_defaults(**{**values, "warmup_epochs": None})
    args = parser.parse_args(argv)
    if args.model not in model_builder.VIT_PRESETS:  # a CNN or pretrained weights: no ViT flag applies
        given = vars(_parser(recipe_parser, values, argument_default=argparse.SUPPRESS).parse_args(argv))
        misplaced = [f"--{name.replace('_', '-')}" for name in recipe.VIT_FLAGS if name in given]
        if misplaced:
            parser.error(f"--model {args.model} brings its own architecture and dropout: leave out "
                         f"{', '.join(misplaced)}")
        vars(args).update(dict.fromkeys(recipe.VIT_FLAGS))
    if args.warmup_epochs is None:  # with --epochs alone, the recipe's share of warmup
        args.warmup_epochs = recipe.scaled_warmup_epochs(values, args.epochs)
    if args.stem_channels == [0]:
        args.stem_channels = None
    if problem := _check_args(args):
        parser.error(problem)
    return args


def _parser(recipe_parser: argparse.ArgumentParser, values: dict[str, Any], **options: Any) -> argparse.ArgumentParser:
    epilog = "\n\n".join(f"--recipe {name} is:\n  " + "\n  ".join(textwrap.wrap(
        " ".join(recipe.recipe_as_flags(recipe_values)), width=100, break_on_hyphens=False))
        for name, recipe_values in recipe.TRAINING_RECIPES.items())
    parser = _Parser(prog="python -m going_modular.train", parents=[recipe_parser], formatter_class=_HelpFormatter,
                     description="Train a Vision Transformer (Dosovitskiy et al., 2020) on an image-folder dataset.",
                     epilog=epilog, **options)
    group = parser.add_argument_group("data")
    group.add_argument("--data-dir", type=Path, help="A folder of train/<class>/ and test/<class>/ images; None: "
                       "pizza_steak_sushi in the course data directory, downloaded when missing.")
    group.add_argument("--train-dir", type=Path, help="Training images, <dir>/<class>/<image>; None: <data-dir>/train.")
    group.add_argument("--train-subset", type=int, metavar="N", help="Train on N of the training photos, classes "
                       "balanced and nested: with one --seed, a smaller N's photos are among a larger N's "
                       "(training.data.balanced_subset). An epoch keeps the folder's length: any N, as many steps.")
    group.add_argument("--val-dir", help="Validation images, <dir>/<class>/<image>, evaluated every epoch to choose "
                       "settings by. 'auto': pizza_steak_sushi's (going_modular.training.validation_split).")
    group.add_argument("--image-size", type=int, help="Images are resized to this height and width.")
    group.add_argument("--batch-size", type=int, help="Images per batch (per process under torchrun).")
    group.add_argument("--drop-last", action=argparse.BooleanOptionalAction,
                       help="Leave out each epoch's last, incomplete training batch (always under torchrun).")
    group.add_argument("--num-workers", type=int, default=data_setup.NUM_WORKERS, help="Data-loading processes.")
    group.add_argument("--preload-eval", action=argparse.BooleanOptionalAction, default=True,
                       help="Keep the resized test and validation images in memory (training.data.preloaded).")
    group = parser.add_argument_group("model")
    group.add_argument("--model", choices=[*model_builder.VIT_PRESETS, *CNN_MODELS, *pretrained.PRETRAINED_WEIGHTS],
                       help="ViT preset (width and heads); resnet18: torchvision's, from scratch; vit_ti_16_augreg: "
                            "the pretrained ViT-Ti/16 with a new head, every weight trained (pretrained.py).")
    group.add_argument("--patch-size", type=int, help="Patch size P; None: the preset's.")
    group.add_argument("--num-transformer-layers", type=int, help="Depth L; None: the preset's.")
    group.add_argument("--stem-channels", type=int, nargs="+", metavar="C", help="The hybrid model (section 3.1): "
                       "a stem of 3x3 stride-2 convolutions with these channels, its map cut into patches; 0: none.")
    group.add_argument("--pool", choices=("cls", "mean"), help="Classify the class token or the tokens' mean (D.3).")
    group = parser.add_argument_group("optimisation")
    group.add_argument("--epochs", type=int, help="Passes over the training data.")
    group.add_argument("--optimizer", choices=recipe.OPTIMIZERS, help="adamw: the paper's pre-training (B.1); sgd, "
                       "momentum 0.9: its fine-tuning (B.1.1).")
    group.add_argument("--lr", type=float, help="Peak learning rate.")
    group.add_argument("--weight-decay", type=float, help="Weight decay (not on biases, norms, embeddings).")
    group.add_argument("--warmup-epochs", type=int, help=f"Linear warmup; None: the recipe's share of --epochs "
                       f"({values['warmup_epochs']} of {values['epochs']}), rounded.")
    group.add_argument("--lr-decay", choices=recipe.DECAY_SCHEDULES, help="Decay after warmup, per step.")
    group.add_argument("--max-grad-norm", type=float, help="Clip the global gradient norm; 0: off.")
    group.add_argument("--accumulation-steps", type=int, default=1, help="Batches whose gradients add up per step.")
    group.add_argument("--amp", nargs="?", const=True, default=False, choices=("float16", "bfloat16"),
                       help="Mixed precision: bfloat16 where the device computes it fast, else float16 with loss "
                            "scaling; or the dtype named.")
    group = parser.add_argument_group("regularisation and augmentation")
    group.add_argument("--dropout", type=float, help="Dropout after the position embedding and every dense layer.")
    group.add_argument("--drop-path-rate", type=float, help="Stochastic depth rate of the last block.")
    group.add_argument("--label-smoothing", type=float, help="Label smoothing of the cross-entropy.")
    group.add_argument("--augment", choices=("none", "crop-flip", *data_setup.AUGMENTATION_POLICIES), help="none: "
                       "resize only; crop-flip: random resized crop and flip; else crop, flip and that policy.")
    group.add_argument("--randaugment-magnitude", type=int, default=9, help="RandAugment's strength (0-30).")
    group.add_argument("--mixup-alpha", type=float, default=0.0, help="MixUp's alpha (DeiT: 0.8); 0: off.")
    group.add_argument("--cutmix-alpha", type=float, default=0.0, help="CutMix's alpha (DeiT: 1.0); 0: off. With "
                       "both, one of them per batch.")
    group.add_argument("--repeated-augmentation", type=int, default=1, metavar="R", help="DeiT's repeated "
                       "augmentation: 1/R of the photos per epoch, each R times per batch; 1: off; not under torchrun.")
    group.add_argument("--ema-decay", type=float, default=0.0, help="Evaluate and save an EMA of the weights; 0: off.")
    group = parser.add_argument_group("distillation through attention (DeiT, Touvron et al. 2021)")
    group.add_argument("--distill", choices=distillation.DISTILLATION_KINDS, help="Learn from --teacher too: hard "
                       "(its predicted class) or soft (its probabilities at temperature 3, weight 0.1).")
    group.add_argument("--teacher", type=Path, help="The teacher: the weights (<name>.pth) of a --teacher-model run "
                       "on the same classes; it sees each augmented batch the student sees.")
    group.add_argument("--teacher-model", default="resnet18", choices=["resnet18", *pretrained.PRETRAINED_WEIGHTS],
                       help="The teacher's architecture: resnet18 from scratch, or those pretrained weights' ViT "
                            "fine-tuned on the same classes at their resolution (it sees each batch resized).")
    group.add_argument("--distillation-token", action=argparse.BooleanOptionalAction, help="With --distill, a ViT "
                       "student gets DeiT's distillation token and head (default); --no-distillation-token puts the "
                       "teacher's term on the class token's head.")
    group = parser.add_argument_group("run and output")
    group.add_argument("--output-dir", type=Path, default=Path("models"), help="Where the outputs and checkpoint go.")
    group.add_argument("--model-name", help="File name stem of the outputs; None: the preset's name.")
    group.add_argument("--resume", nargs="?", const="auto", metavar="CHECKPOINT", help="Continue an interrupted "
                       "run, given the same flags, from <output-dir>/<model-name>_checkpoint.pth or this file.")
    group.add_argument("--seed", type=int, default=42, help="Random seed for weights, shuffling and dropout.")
    group.add_argument("--device", help="cpu, cuda, cuda:1, mps ...; None: the best available.")
    group.add_argument("--max-batches", type=int, help="Stop each epoch after this many batches (a quick run).")
    return parser


def _check_args(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with the flags that torch and the model would take without a word, or None."""
    counts = ("epochs", "accumulation_steps", "num_transformer_layers", "max_batches", "repeated_augmentation",
              "train_subset")
    rules = [  # (flag, whether its value is allowed, the rule): values torch takes, and trains nothing with
        *((name, getattr(args, name) is None or getattr(args, name) >= 1, "must be at least 1") for name in counts),
        ("lr", args.lr > 0, "must be positive"),
        ("label_smoothing", 0 <= args.label_smoothing < 1, "must be at least 0 and below 1"),
        ("drop_path_rate", 0 <= (args.drop_path_rate or 0) < 1, "must be at least 0 and below 1"),
        ("dropout", 0 <= (args.dropout or 0) < 1, "must be at least 0 and below 1"),
        ("randaugment_magnitude", 0 <= args.randaugment_magnitude <= 30, "must be between 0 and 30"),
        ("max_grad_norm", args.max_grad_norm is None or args.max_grad_norm >= 0, "must be at least 0 (0: off)"),
        ("warmup_epochs", 0 <= args.warmup_epochs <= args.epochs, f"must be between 0 and --epochs ({args.epochs})"),
        ("ema_decay", 0 <= args.ema_decay < 1, "must be at least 0 (off) and below 1"),
        ("stem_channels", args.stem_channels is None or min(args.stem_channels) >= 1, "must all be at least 1"),
    ]
    for name, allowed, rule in rules:
        if not allowed:
            return f"--{name.replace('_', '-')} {rule}, got {getattr(args, name)}"
    if (args.distill is None) != (args.teacher is None):
        return "--distill and --teacher go together: give both (the kind and the teacher's weights) or neither"
    if args.distillation_token is not None and (args.distill is None or args.model not in model_builder.VIT_PRESETS):
        return "--distillation-token belongs to distilling a ViT preset: give it with --distill, or leave it out"
    if args.repeated_augmentation > 1 and distributed.launched_by_torchrun():
        return ("--repeated-augmentation works in a single process; under torchrun every process shuffles its own "
                "shard (DistributedSampler). Leave it at 1, or train without torchrun")
    if args.train_subset and (args.repeated_augmentation > 1 or distributed.launched_by_torchrun()):
        return ("--train-subset chooses every epoch's photos itself, in a single process: leave it out under torchrun "
                "or with --repeated-augmentation")
    if args.val_dir == "auto" and (args.data_dir is not None or args.train_dir is not None):
        return ("--val-dir auto is the validation split of the course's pizza_steak_sushi; with your own --data-dir "
                "or --train-dir (the 20 % split's holds 255 of its photos), give --val-dir a folder of other photos")
    if args.device is not None:
        try:
            device = torch.device(args.device)
        except RuntimeError:
            return f"--device {args.device!r} is not a device PyTorch knows; use cpu, cuda, cuda:1 or mps, or omit it"
        if device.type == "cuda" and not torch.cuda.is_available():
            return f"--device {args.device}: no CUDA GPU is available here; leave it out to use the best available"
    return None


def _resolve_data_dirs(args: argparse.Namespace) -> tuple[Path, Optional[Path]]:
    """(data folder, validation folder or None), downloading the course's data when it is asked for and missing."""
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise FileNotFoundError(f"--data-dir {args.data_dir} does not exist. Give a folder with train/ and test/.")
    if args.val_dir not in (None, "auto") and not Path(args.val_dir).is_dir():
        raise FileNotFoundError(f"--val-dir {args.val_dir} does not exist. Give a folder of <class>/<image> files.")
    data_dir = args.data_dir or data_setup.download_data(data_setup.PIZZA_STEAK_SUSHI_URL, "pizza_steak_sushi")
    if args.val_dir == "auto":
        return data_dir, validation_split.download_validation_split()
    return data_dir, Path(args.val_dir) if args.val_dir is not None else None


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Run the command line; return the results it writes as JSON. A user error (``USER_ERRORS``, or a setting
    torch or the model refuses) prints one line and exits with status 2; any other keeps its traceback."""
    args = parse_args(argv)
    try:
        context = distributed.init_from_env(args.device)
        try:
            return _train(args, context)
        finally:
            distributed.cleanup()
    except USER_ERRORS as error:
        _exit_with_error(str(error))


def _train(args: argparse.Namespace, context: Optional[distributed.DistributedContext]) -> dict:
    device = context.device if context is not None else torch.device(args.device or utils.get_device())
    main_process = distributed.is_main_process()
    name = args.model_name or args.model
    world_size = context.world_size if context is not None else 1
    config = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    run_config = {**config, "world_size": world_size}  # what a checkpoint must match to be resumed
    default_checkpoint = checkpoint.checkpoint_path(args.output_dir, name)
    checkpoint_file = default_checkpoint if args.resume in (None, "auto") else Path(args.resume)
    resumed = checkpoint.checkpoint_to_resume(checkpoint_file, args.resume is not None, run_config,
                                              RESUMABLE_CHANGES, args.output_dir / f"{name}_results.json")
    # Under torchrun only rank 0 looks for the data (and downloads it), then tells the others.
    data_dir, val_dir = distributed.from_rank_zero(lambda: _resolve_data_dirs(args), context)

    utils.set_seeds(args.seed)  # the same initial weights in every process (DDP also copies rank 0's)
    try:  # a setting that torch, torchvision or the model refuses: their message, in one line
        train_dataloader, test_dataloader, val_dataloader, class_names = _dataloaders(args, data_dir, val_dir)
        num_train_images = args.train_subset or len(train_dataloader.dataset)
        num_test_images = len(test_dataloader.dataset)
        model = _create_model(args, len(class_names)).to(device)
        trained_model = model
        if args.distill is not None:  # the teacher runs beside the student; only the student trains and is saved
            trained_model = distillation.TeacherStudent(model, distillation.load_teacher(
                args.teacher_model, args.teacher, len(class_names), device))
        if context is not None:
            utils.set_seeds(args.seed + context.rank)  # different augmentation and dropout in each process
            train_dataloader, test_dataloader = distributed.shard_dataloaders(
                train_dataloader, test_dataloader, context, args.seed)
            if val_dataloader is not None:
                val_dataloader = distributed.shard_eval_dataloader(val_dataloader, context)
            # The hybrid's BatchNorm statistics go from rank 0 to all with every forward pass (the plain ViT has none).
            trained_model = nn.parallel.DistributedDataParallel(
                trained_model, device_ids=[device.index] if device.type == "cuda" else None,
                broadcast_buffers=any(True for _ in model.buffers()))
        optimisation = _optimisation(args, model, train_dataloader, device)
    except ValueError as error:
        _exit_with_error(str(error))

    record: dict[str, Any] = {"metrics": None, "steps": {"lr": [], "loss": [], "grad_norm": []},
                              "resumed_after_epochs": [], "training_seconds": 0.0}
    if resumed is not None:
        record.update(resumed["results"])
        record["resumed_after_epochs"] = [*record["resumed_after_epochs"], resumed["epoch"]]
        if main_process:
            print(f"Resuming from {settings.display_path(checkpoint_file)}: {resumed['epoch']} of {args.epochs} "
                  f"epochs were done.")
        checkpoint.restore(resumed, model=model, **optimisation,
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
        if optimisation["averaged_model"] is not None:
            optimisation["averaged_model"].update_parameters(model)

    def write_checkpoint(epoch: int, history: engine.Results) -> None:
        record.update(metrics=history, training_seconds=seconds_before + time.perf_counter() - start)
        checkpoint.save_checkpoint(checkpoint_file, model=model, **optimisation, epoch=epoch, results=record,
                                   config=run_config, training_seconds=record["training_seconds"])

    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    if args.distill is not None:
        loss_fn = distillation.DistillationLoss(loss_fn, args.distill)
    history = engine.train(
        trained_model, train_dataloader, test_dataloader, optimisation["optimizer"], loss_fn, args.epochs, device,
        scheduler=optimisation["scheduler"], max_grad_norm=args.max_grad_norm or None,
        accumulation_steps=args.accumulation_steps, amp=_amp(args), grad_scaler=optimisation["grad_scaler"],
        max_batches=args.max_batches, val_dataloader=val_dataloader, eval_model=optimisation["averaged_model"],
        start_epoch=resumed["epoch"] + 1 if resumed is not None else 1, results=record["metrics"],
        on_step_end=record_step, on_epoch_end=write_checkpoint, print_every=max(1, args.epochs // 10),
    )
    train_images = train_dataloader.dataset  # --train-subset's photos, <class>/<file>: a benchmark checks against them
    results = {
        "metrics": history, "steps": record["steps"], "config": config, "class_names": class_names,
        "num_train_images": num_train_images, "num_test_images": num_test_images,
        "train_photos": [str(Path(train_images.samples[index][0]).relative_to(train_images.root))
                         for index in train_dataloader.sampler.indices] if args.train_subset else None,
        "num_val_images": len(val_dataloader.dataset) if val_dataloader is not None else 0,
        "data_dir": str(data_dir), "val_dir": str(val_dir) if val_dir is not None else None,
        "device": str(device), "world_size": world_size, "seed": args.seed,
        "wall_time_seconds": round(seconds_before + time.perf_counter() - start, 2),
        "resumed_after_epochs": record["resumed_after_epochs"], "torch_version": torch.__version__,
        "model_path": str(args.output_dir / f"{name}.pth"),
    }
    if main_process:
        averaged_model = optimisation["averaged_model"]
        model_path = utils.save_model(averaged_model.module if averaged_model is not None else model, args.output_dir,
                                      f"{name}.pth")
        utils.save_json(results, args.output_dir / f"{name}_results.json")
        plt.close(plot_loss_curves(history, args.output_dir / f"{name}_loss_curves.png",
                                   title=f"{args.model} on {device}, {args.epochs} epochs"))
        print(f"Wrote {settings.display_path(model_path)}, {name}_results.json and {name}_loss_curves.png to "
              f"{settings.display_path(args.output_dir)}")
        checkpoint_file.unlink(missing_ok=True)  # the run is complete: its outputs replace the checkpoint
    return results


def _create_model(args: argparse.Namespace, num_classes: int) -> nn.Module:
    """The --model: a CNN from scratch, pretrained weights at --image-size with a new head and every weight trainable
    (section 3.2; their own dropout, 0), or a ViT preset from scratch shaped by the ViT flags."""
    if args.model in CNN_MODELS:
        return CNN_MODELS[args.model](weights=None, num_classes=num_classes)
    if args.model in pretrained.PRETRAINED_WEIGHTS:
        return pretrained.load_pretrained_vit(args.model, num_classes, freeze_backbone=False,
                                              img_size=args.image_size)[0]
    distillation_token = args.distill is not None and args.distillation_token is not False
    return model_builder.create_vit(args.model, num_classes, distillation_token=distillation_token,
                                    **recipe.model_overrides(vars(args)))


def _dataloaders(args: argparse.Namespace, data_dir: Path,
                 val_dir: Optional[Path]) -> tuple[DataLoader, DataLoader, Optional[DataLoader], list[str]]:
    """(train, test, validation or None, class names) as the data, augmentation and sampling flags ask."""
    if args.augment == "none":  # resize only
        train_transform = test_transform = data_setup.manual_transforms(args.image_size)
    else:  # random resized crop and flip, then the --augment policy unless it is crop-flip
        policy = None if args.augment == "crop-flip" else args.augment
        train_transform = data_setup.train_transforms(args.image_size, policy,
                                                      randaugment_magnitude=args.randaugment_magnitude)
        test_transform = data_setup.eval_transforms(args.image_size)
    train_dir = args.train_dir or data_dir / "train"
    train_images = data_setup.image_folder(train_dir, None, "train")  # classes, labels and size, for mix and sampler
    mix = (MixUpCutMix(len(train_images.classes), mixup_alpha=args.mixup_alpha, cutmix_alpha=args.cutmix_alpha)
           if args.mixup_alpha or args.cutmix_alpha else None)
    sampler = (RepeatedAugmentationSampler(len(train_images), args.repeated_augmentation)
               if args.repeated_augmentation > 1 else None)
    if args.train_subset:
        sampler = SubsetSampler(balanced_subset(train_images.targets, args.train_subset, args.seed), len(train_images))
    train_dataloader, test_dataloader, class_names = data_setup.create_dataloaders(
        train_dir, data_dir / "test", train_transform, args.batch_size, num_workers=args.num_workers,
        test_transform=test_transform, drop_last=args.drop_last, train_sampler=sampler, train_collate_fn=mix,
    )
    val_dataloader = None if val_dir is None else validation_split.create_validation_dataloader(
        val_dir, test_transform, args.batch_size, class_names, num_workers=args.num_workers)
    if args.preload_eval:
        test_dataloader = preloaded(test_dataloader)
        val_dataloader = preloaded(val_dataloader) if val_dataloader is not None else None
    return train_dataloader, test_dataloader, val_dataloader, class_names


def _optimisation(args: argparse.Namespace, model: nn.Module, train_dataloader: DataLoader,
                  device: torch.device) -> dict[str, Any]:
    """What changes the weights, saved in a checkpoint besides them: optimiser, lr schedule, grad scaler and EMA."""
    optimizer = recipe.create_optimizer(model, lr=args.lr, weight_decay=args.weight_decay, optimizer=args.optimizer)
    steps_per_epoch = math.ceil(engine.num_batches(train_dataloader, args.max_batches) / args.accumulation_steps)
    scheduler = recipe.create_scheduler(optimizer, total_steps=steps_per_epoch * args.epochs,
                                        warmup_steps=steps_per_epoch * args.warmup_epochs, decay=args.lr_decay)
    averaged_model = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema_decay), use_buffers=True,
    ) if args.ema_decay else None
    return {"optimizer": optimizer, "scheduler": scheduler, "grad_scaler": engine.make_grad_scaler(device, _amp(args)),
            "averaged_model": averaged_model}


def _amp(args: argparse.Namespace) -> engine.Amp:
    """--amp as the engine takes it: False, True (the device's dtype) or the dtype named."""
    return getattr(torch, args.amp) if isinstance(args.amp, str) else args.amp


if __name__ == "__main__":
    main()
