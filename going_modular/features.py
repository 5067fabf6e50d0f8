"""Train a head on a frozen backbone's features, computed once instead of once per epoch (notebook 06): a frozen
backbone gives an unaugmented image the same features every time, so the head comes out the same.

    backbone = vit_backbone(model)                       # images -> what the head receives
    train_features = extract_features(backbone, train_dataloader, device)
    train_head(model.head, train_features, test_features, device, seed=42)  # torchvision's: model.heads
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from going_modular import engine
from going_modular.model_builder import ViT


class _ViTBackbone(nn.Module):
    """A ViT up to its head. It holds the model, so it moves and switches mode with it."""

    def __init__(self, model: Union[ViT, torchvision.models.VisionTransformer]) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        model = self.model
        if isinstance(model, ViT):
            return model.forward_head(model.forward_features(images), pre_logits=True)
        # torchvision's VisionTransformer.forward without its heads: the class token after encoder.ln.
        tokens = model._process_input(images)
        return model.encoder(torch.cat([model.class_token.expand(len(tokens), -1, -1), tokens], dim=1))[:, 0]


def vit_backbone(model: Union[ViT, torchvision.models.VisionTransformer]) -> nn.Module:
    """Wrap the course's or torchvision's ViT (any other model: TypeError) as a module returning what its head sees."""
    if not isinstance(model, (ViT, torchvision.models.VisionTransformer)):
        raise TypeError(f"Expected the course's ViT or a torchvision VisionTransformer, got {type(model).__name__}.")
    return _ViTBackbone(model)


def extract_features(backbone: nn.Module, dataloader: DataLoader, device: Union[str, torch.device],
                     progress: bool = True, max_batches: Optional[int] = None) -> TensorDataset:
    """Run ``backbone`` once over ``dataloader`` (without random augmentation) in eval mode, every module's mode
    restored afterwards: a TensorDataset (features, labels) on the CPU. ``max_batches`` stops early."""
    modes = {module: module.training for module in backbone.modules()}
    backbone.eval()
    features, labels = [], []
    try:
        with torch.inference_mode():
            for _, (images, targets) in engine.batches(dataloader, max_batches, "features", progress):
                features.append(backbone(images.to(device)).float().cpu())
                labels.append(targets)
    finally:
        for module, training in modes.items():
            module.train(training)
    return TensorDataset(torch.cat(features), torch.cat(labels))


def feature_dataloader(features: TensorDataset, batch_size: int, shuffle: bool,
                       generator: Optional[torch.Generator] = None) -> DataLoader:
    """A DataLoader over cached features (no worker processes: the tensors are already in memory)."""
    return DataLoader(features, batch_size=batch_size, shuffle=shuffle, generator=generator)


def train_head(head: nn.Module, train_features: TensorDataset, test_features: TensorDataset,
               device: Union[str, torch.device], *, seed: int, epochs: int = 10, batch_size: int = 32, lr: float = 1e-3,
               val_features: Optional[TensorDataset] = None) -> engine.Results:
    """Train ``head`` with Adam on cached features as notebook 06 does, every linear layer from zero (section 3.2)
    and the batches' order fixed by ``seed``: engine.train's results."""
    torch.manual_seed(seed)
    for layer in head.modules():
        if isinstance(layer, nn.Linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
    train_loader = feature_dataloader(train_features, batch_size, shuffle=True,
                                      generator=torch.Generator().manual_seed(seed))
    test_loader, val_loader = (feature_dataloader(cached, batch_size, shuffle=False) if cached is not None else None
                               for cached in (test_features, val_features))
    return engine.train(head, train_loader, test_loader, torch.optim.Adam(head.parameters(), lr=lr),
                        nn.CrossEntropyLoss(), epochs, device, progress=False, val_dataloader=val_loader)
