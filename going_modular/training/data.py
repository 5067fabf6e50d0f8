"""What only the training command adds to the data: MixUp/CutMix, repeated augmentation, nested class-balanced
subsets of the training photos, evaluation sets in memory."""
from __future__ import annotations

import itertools
import math
from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler, SequentialSampler, TensorDataset, default_collate
from torchvision.transforms import v2


class MixUpCutMix:
    """A training ``collate_fn`` that mixes each batch by MixUp or CutMix, one at random per batch (DeiT): MixUp
    (Zhang et al., 2018) blends two images, x = l x_i + (1 - l) x_j; CutMix (Yun et al., 2019) pastes a rectangle of
    x_j into x_i; the labels, class probabilities [batch, num_classes], mix alike, l ~ Beta(alpha, alpha). An alpha
    of 0 leaves its mix out; ValueError when both are 0 or one is negative."""

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
    """Repeated augmentation (Hoffer et al., 2020; DeiT): each epoch shuffles the n indices, keeps the first
    ceil(n / repeats) and yields each ``repeats`` times in a row (each under its own augmentation), n in all. The
    shuffle draws from the global generator, which a checkpoint saves. ValueError when ``repeats`` is below 1."""

    def __init__(self, num_images: int, repeats: int) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1 (1: a plain shuffle), got {repeats}.")
        self.num_images, self.repeats = num_images, repeats

    def __iter__(self) -> Iterator[int]:
        chosen = torch.randperm(self.num_images)[:math.ceil(self.num_images / self.repeats)]
        return iter(chosen.repeat_interleave(self.repeats)[:self.num_images].tolist())

    def __len__(self) -> int:
        return self.num_images


def balanced_subset(labels: Sequence[int], size: int, seed: int) -> list[int]:
    """The sorted indices of ``size`` photos, classes as balanced as their counts allow, nested (for one ``seed``,
    each size's subset holds every smaller one's): the training subsets of Figure 4 (section 4.3), in miniature.
    ValueError unless ``size`` is between 1 and ``len(labels)``."""
    if not 1 <= size <= len(labels):
        raise ValueError(f"A subset of {size} photos cannot be drawn from {len(labels)}: give 1 to {len(labels)}.")
    generator = torch.Generator().manual_seed(seed)
    by_class = [[index for index, label in enumerate(labels) if label == value] for value in sorted(set(labels))]
    shuffled = [[indices[i] for i in torch.randperm(len(indices), generator=generator)] for indices in by_class]
    # The first ``size`` of one random order that takes a photo of each class in turn.
    in_turn = [index for turn in itertools.zip_longest(*shuffled) for index in turn if index is not None]
    return sorted(in_turn[:size])


class SubsetSampler(Sampler[int]):
    """A training epoch of ``num_samples`` indices drawn from ``indices`` in shuffled passes (the last one cut
    short; ``RandomSampler``'s order), so a subset trains for as many steps as the whole folder would."""

    def __init__(self, indices: Sequence[int], num_samples: int) -> None:
        self.indices, self.positions = list(indices), RandomSampler(indices, num_samples=num_samples)

    def __iter__(self) -> Iterator[int]:
        return (self.indices[position] for position in self.positions)

    def __len__(self) -> int:
        return len(self.positions)


def preloaded(dataloader: DataLoader) -> DataLoader:
    """The same evaluation DataLoader, its images transformed once and kept in memory (51 MB for 466 photos at
    96 px), so no epoch decodes and resizes them again. The transform must draw nothing at random: it would be frozen
    at its first draw. ValueError when the DataLoader shuffles."""
    if not isinstance(dataloader.sampler, SequentialSampler):
        raise ValueError("preloaded() is for evaluation DataLoaders, which keep their order; this one shuffles.")
    # Indexed directly, not through a DataLoader: starting to iterate one draws a seed from the global random
    # generator, which would change the initial weights and data order of the run that follows.
    images, labels = zip(*(dataloader.dataset[index] for index in range(len(dataloader.dataset))))
    return DataLoader(TensorDataset(torch.stack(images), torch.as_tensor(labels)), batch_size=dataloader.batch_size,
                      shuffle=False, pin_memory=dataloader.pin_memory)
