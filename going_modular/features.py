"""Training a head on a frozen backbone without running the backbone every epoch.

A frozen backbone maps the same image to the same features every time (when nothing random happens
to the image), so computing them once and training the head on the stored features gives the same
head as training end to end, in a fraction of the time: the backbone runs once per image instead of
once per image per epoch. Notebook 06 uses it for the pretrained ViT-Ti/16 feature extractor (and,
where its weights can be downloaded, torchvision's ViT-B/16).

    backbone = vit_backbone(model)                       # images -> class-token features
    train_features = extract_features(backbone, train_dataloader, device)
    loader = feature_dataloader(train_features, batch_size=32, shuffle=True)
    engine.train(model.head, loader, ...)                # only the head trains (torchvision's: model.heads)
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from going_modular.engine import batches
from going_modular.model_builder import ViT


class _TorchvisionViTBackbone(nn.Module):
    """torchvision's VisionTransformer up to (not including) its head: images -> class-token features."""

    def __init__(self, model: torchvision.models.VisionTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.model._process_input(images)
        class_token = self.model.class_token.expand(tokens.shape[0], -1, -1)
        return self.model.encoder(torch.cat([class_token, tokens], dim=1))[:, 0]


class _ViTBackbone(nn.Module):
    """The course's ViT up to its head: images -> pooled features (class token or mean)."""

    def __init__(self, model: ViT) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(images)
        pooled = features[:, 0] if self.model.pool == "cls" else features[:, 1:].mean(dim=1)
        return self.model.pre_logits(pooled)


def vit_backbone(model: Union[ViT, torchvision.models.VisionTransformer]) -> nn.Module:
    """Wrap a ViT (the course's or torchvision's) as a module that returns what its head receives.

    The wrapper shares the model's parameters; it copies nothing.

    Raises:
        TypeError: for any other kind of model.
    """
    if isinstance(model, ViT):
        return _ViTBackbone(model)
    if isinstance(model, torchvision.models.VisionTransformer):
        return _TorchvisionViTBackbone(model)
    raise TypeError(f"Expected the course's ViT or a torchvision VisionTransformer, got {type(model).__name__}.")


def extract_features(
    backbone: nn.Module,
    dataloader: DataLoader,
    device: Union[str, torch.device],
    progress: bool = True,
    max_batches: Optional[int] = None,
) -> TensorDataset:
    """Run ``backbone`` once over ``dataloader`` and keep the features and labels (on the CPU).

    The backbone runs in eval mode under ``torch.inference_mode()``. Use it with a dataloader whose
    transform has no randomness (no augmentation): cached features are the same every epoch, so the
    result equals end-to-end training only when the images are too.

    Args:
        backbone: maps a batch of images to a batch of feature vectors (see ``vit_backbone``).
        dataloader: yields (images, labels); its order is kept.
        device: where the backbone runs.
        progress: show a progress bar.
        max_batches: stop after this many batches (a reduced run); None for all.

    Returns:
        A TensorDataset of (features [N, D], labels [N]).
    """
    modes = {module: module.training for module in backbone.modules()}  # restored afterwards, module by module
    backbone.eval()
    features, labels = [], []
    try:
        with torch.inference_mode():
            for _, (images, targets) in batches(dataloader, max_batches, "features", progress):
                features.append(backbone(images.to(device)).float().cpu())
                labels.append(targets)
    finally:
        for module, training in modes.items():
            module.train(training)
    return TensorDataset(torch.cat(features), torch.cat(labels))


def feature_dataloader(
    features: TensorDataset, batch_size: int, shuffle: bool, generator: Optional[torch.Generator] = None
) -> DataLoader:
    """A DataLoader over cached features (no worker processes: the tensors are already in memory)."""
    return DataLoader(features, batch_size=batch_size, shuffle=shuffle, generator=generator)
