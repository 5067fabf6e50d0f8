"""What only the training command adds to the data: MixUp/CutMix, repeated augmentation, evaluation sets in memory."""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler, TensorDataset, default_collate
from torchvision.transforms import v2


class MixUpCutMix:
    """A training ``collate_fn`` that mixes each batch by MixUp or CutMix, one of them at random per batch (DeiT).

    MixUp (Zhang et al., 2018) blends two images, x = l x_i + (1 - l) x_j; CutMix (Yun et al., 2019) pastes a
    rectangle of x_j into x_i; the label becomes the same mixture of the two one-hot labels, l ~ Beta(alpha, alpha).
    The labels come out as class probabilities [batch, num_classes], which ``nn.CrossEntropyLoss`` accepts.

    Args:
        mixup_alpha: MixUp's alpha; 0 leaves MixUp out.
        cutmix_alpha: CutMix's alpha; 0 leaves CutMix out.

    Raises:
        ValueError: both alphas are 0, or one is negative.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0) -> None:
        if min(mixup_alpha, cutmix_alpha) < 0 or max(mixup_alpha, cutmix_alpha) == 0:
            raise ValueError(f"Give a positive mixup_alpha or cutmix_alpha (and neither negative), got "
                             f"{mixup_alpha} and {cutmix_alpha}.")
        mixes = [v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha > 0 else []
        mixes += [v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)] if cutmix_alpha > 0 else []
        self.mix = mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)

    def __call__(self, batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mix(*default_collate(batch))


class RepeatedAugmentationSampler(Sampler[int]):
    """Repeated augmentation (Hoffer et al., 2020; DeiT): each chosen photo ``repeats`` times in a row, each time
    under a different random augmentation.

    Every epoch shuffles the indices, keeps the first ceil(n / repeats) and yields each ``repeats`` times, n indices
    in all: as many steps as a plain shuffle, each batch averaging over several views of the same photos. The shuffle
    draws from the global generator, which ``utils.set_seeds`` seeds and a checkpoint saves, so a resumed run sees
    the same photos.

    Raises:
        ValueError: ``repeats`` is below 1.
    """

    def __init__(self, num_images: int, repeats: int) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1 (1: a plain shuffle), got {repeats}.")
        self.num_images, self.repeats = num_images, repeats

    def __iter__(self) -> Iterator[int]:
        chosen = torch.randperm(self.num_images)[:math.ceil(self.num_images / self.repeats)]
        return iter(chosen.repeat_interleave(self.repeats)[:self.num_images].tolist())

    def __len__(self) -> int:
        return self.num_images


def preloaded(dataloader: DataLoader) -> DataLoader:
    """The same evaluation DataLoader, its images transformed once and kept in memory as a ``TensorDataset``.

    The same batches in the same order, without decoding and resizing every photo again each epoch
    (benchmarks/README.md, "Is data loading a bottleneck?"); it takes images x 3 x height x width x 4 bytes
    (51 MB for 466 photos at 96 px). The transform must draw nothing at random: it would be frozen at its first draw.

    Raises:
        ValueError: the DataLoader shuffles (it is not an evaluation DataLoader).
    """
    if not isinstance(dataloader.sampler, SequentialSampler):
        raise ValueError("preloaded() is for evaluation DataLoaders, which keep their order; this one shuffles.")
    return DataLoader(_tensors(dataloader.dataset), batch_size=dataloader.batch_size, shuffle=False,
                      pin_memory=dataloader.pin_memory)


def _tensors(dataset: Dataset) -> TensorDataset:
    # Indexed directly, not through a DataLoader: starting to iterate one draws a seed from the global random
    # generator, which would change the initial weights and data order of the run that follows.
    images, labels = zip(*(dataset[index] for index in range(len(dataset))))
    return TensorDataset(torch.stack(images), torch.as_tensor(labels))
