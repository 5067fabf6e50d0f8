"""Train a ViT preset on an image-folder dataset from the command line.

    python -m going_modular.train --model vit_ti_16 --epochs 1

With no --data-dir it uses pizza_steak_sushi in the course's data directory, downloading it when it
is missing. It writes, in --output-dir: the model's weights (.pth), a results JSON (per-epoch metrics,
configuration, seed, device, wall time) and a loss-curve PNG. ``--help`` lists every flag.

The same command trains data-parallel on several GPUs (or CPU processes) when started by torchrun:

    torchrun --nproc_per_node=4 -m going_modular.train --model vit_s_16 --epochs 100

Each process trains on its shard of every epoch (``distributed``); --batch-size is per process. The
metrics are those of the whole dataset, and only rank 0 prints and writes files.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import matplotlib.pyplot as plt
import torch
from torch import nn

from going_modular import data_setup, distributed, engine, model_builder, recipe, utils
from going_modular.plotting import plot_loss_curves


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        prog="python -m going_modular.train",
        description="Train a Vision Transformer (Dosovitskiy et al., 2020) on an image-folder dataset.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", default="vit_ti_16", choices=sorted(model_builder.VIT_PRESETS),
                        help="ViT preset: Table 1's vit_b_16/vit_l_16/vit_h_14, or the small vit_ti_16/vit_s_16 for a CPU.")
    parser.add_argument("--epochs", type=int, default=10, help="Passes over the training data.")
    parser.add_argument("--batch-size", type=int, default=32, help="Images per batch (per process under torchrun).")
    parser.add_argument("--lr", type=float, default=1e-3, help="Peak learning rate of AdamW (after any warmup).")
    parser.add_argument("--weight-decay", type=float, default=0.1,
                        help="AdamW's decoupled weight decay on weight matrices; biases, norms, class token and "
                             "position embedding get none (the paper's Table 3: 0.1 for JFT pre-training).")
    parser.add_argument("--image-size", type=int, default=224, help="Images are resized to this height and width.")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="A folder with train/<class>/ and test/<class>/ images. "
                             "Default: pizza_steak_sushi in the course data directory, downloaded when missing.")
    parser.add_argument("--output-dir", type=Path, default=Path("models"), help="Where the model, results and plot go.")
    parser.add_argument("--model-name", default=None, help="File name stem of the outputs; the preset's name when not given.")
    parser.add_argument("--seed", type=int, default=42, help="Random seed for weights, shuffling and dropout.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps ...; the best available when not given.")
    parser.add_argument("--num-workers", type=int, default=data_setup.NUM_WORKERS, help="Data-loading worker processes.")
    parser.add_argument("--patch-size", type=int, default=None, help="Override the preset's patch size P.")
    parser.add_argument("--num-transformer-layers", type=int, default=None,
                        help="Override the preset's depth L (Table 1), e.g. 6 for a smaller model on little data.")
    parser.add_argument("--pool", default="cls", choices=("cls", "mean"),
                        help="Classify from the class token (the paper) or the mean of the patch tokens (appendix D.3).")
    parser.add_argument("--drop-path-rate", type=float, default=0.0, help="Stochastic depth rate of the last block.")
    parser.add_argument("--warmup-epochs", type=int, default=0, help="Epochs of linear learning-rate warmup.")
    parser.add_argument("--lr-decay", default="none", choices=recipe.DECAY_SCHEDULES,
                        help="Learning-rate decay after warmup, stepped per optimisation step.")
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="Label smoothing of the cross-entropy.")
    parser.add_argument("--augment", default="none", choices=("none", "crop-flip", *data_setup.AUGMENTATION_POLICIES),
                        help="none: the course's resize only; crop-flip: random resized crop and flip; "
                             "trivialaugment/randaugment: crop, flip and that policy (with [-1, 1] normalisation).")
    parser.add_argument("--max-grad-norm", type=float, default=None,
                        help="Clip the global gradient norm (the paper: 1.0); 0 turns clipping off.")
    parser.add_argument("--accumulation-steps", type=int, default=1, help="Batches whose gradients add up before each step.")
    parser.add_argument("--amp", action="store_true", help="Mixed precision (bfloat16 autocast on CPU and recent GPUs).")
    parser.add_argument("--max-batches", type=int, default=None, help="Stop each epoch after this many batches (a quick run).")
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "image_size", "accumulation_steps", "patch_size", "num_transformer_layers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _resolve_data_dir(data_dir: Optional[Path]) -> Path:
    if data_dir is None:
        return data_setup.download_data(data_setup.PIZZA_STEAK_SUSHI_URL, "pizza_steak_sushi")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"--data-dir {data_dir} does not exist. Give a folder with train/ and test/ inside.")
    return data_dir


def _transforms(augment: str, image_size: int) -> tuple[Callable, Callable]:
    """(train, test) transforms for the --augment choice."""
    if augment == "none":
        transform = data_setup.manual_transforms(image_size)
        return transform, transform
    policy = None if augment == "crop-flip" else augment
    return data_setup.train_transforms(image_size, policy), data_setup.eval_transforms(image_size)


def _model_overrides(args: argparse.Namespace) -> dict:
    overrides = {"img_size": args.image_size, "drop_path_rate": args.drop_path_rate, "pool": args.pool}
    for name in ("patch_size", "num_transformer_layers"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    return overrides


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Run the command line and return the results dictionary that it also writes as JSON.

    Under torchrun every process returns the same dictionary; only rank 0 writes it.
    """
    args = parse_args(argv)
    context = distributed.init_from_env(args.device)
    try:
        return _train(args, context)
    finally:
        distributed.cleanup()


def _train(args: argparse.Namespace, context: Optional[distributed.DistributedContext]) -> dict:
    if context is not None:
        device = context.device
    else:
        device = torch.device(args.device) if args.device else utils.get_device()
    main_process = distributed.is_main_process()
    name = args.model_name or args.model
    data_dir = _shared_data_dir(args.data_dir, context)

    utils.set_seeds(args.seed)  # the same initial weights in every process (DDP also copies rank 0's)
    train_transform, test_transform = _transforms(args.augment, args.image_size)
    train_dataloader, test_dataloader, class_names = data_setup.create_dataloaders(
        data_dir / "train", data_dir / "test", train_transform, args.batch_size,
        num_workers=args.num_workers, test_transform=test_transform,
    )
    num_train_images, num_test_images = len(train_dataloader.dataset), len(test_dataloader.dataset)
    model = model_builder.create_vit(args.model, num_classes=len(class_names), **_model_overrides(args)).to(device)
    trained_model = model
    if context is not None:
        utils.set_seeds(args.seed + context.rank)  # different augmentation and dropout in each process
        train_dataloader, test_dataloader = distributed.shard_dataloaders(
            train_dataloader, test_dataloader, context, args.seed)
        # No buffers to keep in step (the ViT has none); not broadcasting them lets the unevenly split
        # test shards run without any exchange between processes.
        trained_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    optimizer = recipe.create_optimizer(model, lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(min(len(train_dataloader), args.max_batches or math.inf) / args.accumulation_steps)
    scheduler = recipe.create_scheduler(
        optimizer, total_steps=steps_per_epoch * args.epochs,
        warmup_steps=min(steps_per_epoch * args.warmup_epochs, steps_per_epoch * args.epochs), decay=args.lr_decay,
    )

    if main_process:
        processes = f" x {context.world_size} processes ({context.backend})" if context is not None else ""
        print(f"Training {args.model} on {device}{processes} for {args.epochs} epochs: {num_train_images} train and "
              f"{num_test_images} test images from {data_dir}"
              + (f" (at most {args.max_batches} batches per epoch)" if args.max_batches else ""))
    start = time.perf_counter()
    history = engine.train(
        trained_model, train_dataloader, test_dataloader, optimizer, nn.CrossEntropyLoss(label_smoothing=args.label_smoothing),
        args.epochs, device, scheduler=scheduler, max_grad_norm=args.max_grad_norm or None, accumulation_steps=args.accumulation_steps, amp=args.amp,
        max_batches=args.max_batches,
    )
    wall_time = time.perf_counter() - start

    model_path = args.output_dir / f"{name}.pth"
    results = {
        "metrics": history,
        "config": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "class_names": class_names,
        "num_train_images": num_train_images,
        "num_test_images": num_test_images,
        "data_dir": str(data_dir),
        "device": str(device),
        "world_size": context.world_size if context is not None else 1,
        "seed": args.seed,
        "wall_time_seconds": round(wall_time, 2),
        "torch_version": torch.__version__,
        "model_path": str(model_path),
    }
    if main_process:
        _write_outputs(model, results, history, args, name, device)
    return results


def _shared_data_dir(data_dir: Optional[Path], context: Optional[distributed.DistributedContext]) -> Path:
    """The data folder; under torchrun only rank 0 looks for it (and downloads), then tells the others."""
    if context is None:
        return _resolve_data_dir(data_dir)
    outcome = [None]
    if context.rank == 0:
        try:
            outcome[0] = _resolve_data_dir(data_dir)
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
    print(f"Wrote {model_path}, {name}_results.json and {name}_loss_curves.png to {args.output_dir}")


if __name__ == "__main__":
    main()
