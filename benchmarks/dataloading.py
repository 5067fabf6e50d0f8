"""Is data loading a bottleneck? Images per second from create_dataloaders against a ViT training step.

    python benchmarks/dataloading.py

Reads pizza_steak_sushi's training images (decode, resize to 224 x 224, to tensor) with the course's
transforms, with and without worker processes, a few passes each, and times training steps of the
chosen ViT on batches of the same size. Loading is not the bottleneck while it delivers images
faster than the model consumes them.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from going_modular import data_setup, model_builder  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="vit_b_16", choices=sorted(model_builder.VIT_PRESETS))
    parser.add_argument("--batch-size", type=int, default=32, help="Images per batch.")
    parser.add_argument("--passes", type=int, default=3, help="Passes over the training images per setting.")
    parser.add_argument("--train-steps", type=int, default=2, help="Timed training steps of the model.")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="Folder with train/<class>/ images (default: pizza_steak_sushi in the data directory).")
    return parser.parse_args(argv)


def loader_images_per_second(data_dir: Path, transform, batch_size: int, num_workers: int, passes: int) -> float:
    train_loader, _, _ = data_setup.create_dataloaders(data_dir / "train", data_dir / "test", transform, batch_size,
                                                       num_workers=num_workers)
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        for _images, _labels in train_loader:
            pass
        rates.append(len(train_loader.dataset) / (time.perf_counter() - start))
    return statistics.median(rates)


def training_images_per_second(model_name: str, batch_size: int, steps: int) -> float:
    model = model_builder.create_vit(model_name, num_classes=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images, labels = torch.rand(batch_size, 3, 224, 224), torch.randint(0, 3, (batch_size,))

    def step() -> None:
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    data_dir = args.data_dir or data_setup.download_data(data_setup.PIZZA_STEAK_SUSHI_URL, "pizza_steak_sushi")
    print(f"{data_dir}, batch {args.batch_size}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    for transform_name, transform in (("manual_transforms(224)", data_setup.manual_transforms(224)),
                                      ("train_transforms(224) [TrivialAugment]", data_setup.train_transforms(224))):
        for workers in sorted({0, data_setup.NUM_WORKERS}):
            rate = loader_images_per_second(data_dir, transform, args.batch_size, workers, args.passes)
            print(f"loading  {transform_name:<40} num_workers={workers}: {rate:8.1f} images/s")
    rate = training_images_per_second(args.model, args.batch_size, args.train_steps)
    print(f"training {args.model} (forward, backward, AdamW step, float32):{rate:8.1f} images/s")


if __name__ == "__main__":
    main()
