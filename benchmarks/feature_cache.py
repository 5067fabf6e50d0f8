"""How much faster is training a frozen backbone's head on cached features than end to end?

    python benchmarks/feature_cache.py                    # ViT-B/16, pizza_steak_sushi, 10 epochs, CPU
    python benchmarks/feature_cache.py --epochs 2 --max-images 64

Both paths train the same new head of torchvision's ViT-B/16 (random backbone weights unless the
pretrained ones are in the torch hub cache: the timing does not depend on the weights) with the same
seed, data order (both load images in the main process) and optimiser (SGD: Adam divides by the gradient's own size, so it blows float
rounding in near-zero gradients up to whole steps and hides the equality), without augmentation. It prints the wall time of each, the speed-up,
and the largest difference between the two trained heads.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from going_modular import data_setup, engine, features, pretrained  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10, help="Epochs of head training.")
    parser.add_argument("--batch-size", type=int, default=32, help="Images per batch.")
    parser.add_argument("--max-images", type=int, default=None, help="Use only the first N training images.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="Folder with train/<class>/ images (default: pizza_steak_sushi in the data directory).")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, float]:
    args = parse_args(argv)
    data_dir = args.data_dir or data_setup.download_data(data_setup.PIZZA_STEAK_SUSHI_URL, "pizza_steak_sushi")
    torch.manual_seed(0)
    model, transforms = pretrained.create_vit_feature_extractor(3, allow_random_weights=True)
    model = model.to(args.device)
    train_loader, _, class_names = data_setup.create_dataloaders(
        data_dir / "train", data_dir / "train", transforms, args.batch_size)
    dataset = train_loader.dataset
    if args.max_images:
        dataset = Subset(dataset, range(min(args.max_images, len(dataset))))
    loss_fn = nn.CrossEntropyLoss()
    initial_head = copy.deepcopy(model.heads.state_dict())

    def image_loader() -> DataLoader:
        return DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=0,
                          generator=torch.Generator().manual_seed(1))

    def no_test_loader() -> DataLoader:
        return DataLoader([], batch_size=1)  # measure training only

    start = time.perf_counter()
    engine.train(model, image_loader(), no_test_loader(), torch.optim.SGD(model.heads.parameters(), lr=0.01, momentum=0.9),
                 loss_fn, args.epochs, args.device, progress=False)
    end_to_end_seconds = time.perf_counter() - start
    end_to_end_head = copy.deepcopy(model.heads.state_dict())

    model.heads.load_state_dict(initial_head)
    start = time.perf_counter()
    in_order = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, num_workers=0)
    cached = features.extract_features(features.vit_backbone(model), in_order, args.device, progress=False)
    loader = features.feature_dataloader(cached, args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(1))
    engine.train(model.heads, loader, no_test_loader(), torch.optim.SGD(model.heads.parameters(), lr=0.01, momentum=0.9),
                 loss_fn, args.epochs, args.device, progress=False)
    cached_seconds = time.perf_counter() - start

    difference = max((end_to_end_head[k] - v).abs().max().item() for k, v in model.heads.state_dict().items())
    print(f"ViT-B/16 head, {len(dataset)} images, {args.epochs} epochs, batch {args.batch_size}, "
          f"device {args.device}, torch {torch.__version__}, pretrained={model.pretrained}")
    print(f"end to end: {end_to_end_seconds:.1f} s | cached features: {cached_seconds:.1f} s | "
          f"speed-up {end_to_end_seconds / cached_seconds:.1f}x | max head difference {difference:.2e}")
    return {"end_to_end_s": end_to_end_seconds, "cached_s": cached_seconds, "max_difference": difference}


if __name__ == "__main__":
    main()
