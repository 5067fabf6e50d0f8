"""Training a head on cached backbone features equals training it end to end with a frozen backbone."""
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from going_modular import engine, features
from going_modular.model_builder import ViT


def small_torchvision_vit() -> torchvision.models.VisionTransformer:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                 hidden_dim=16, mlp_dim=32, num_classes=3)
    model.requires_grad_(False)
    model.heads = nn.Sequential(nn.Linear(16, 3))  # a fresh trainable head, as in notebook 06
    return model


def image_dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    return TensorDataset(torch.rand(20, 3, 32, 32, generator=generator), torch.arange(20) % 3)


@pytest.mark.parametrize("make_model", [
    small_torchvision_vit,
    lambda: ViT(img_size=32, patch_size=8, num_transformer_layers=1, embedding_dim=16, mlp_size=32, num_heads=2,
                num_classes=3, pool="mean"),
    lambda: ViT(img_size=32, patch_size=8, num_transformer_layers=1, embedding_dim=16, mlp_size=32, num_heads=2,
                num_classes=3, representation_size=8),  # the pre-logits layer belongs to the backbone
])
def test_backbone_features_are_what_the_head_sees(make_model):
    model = make_model().eval()
    head = model.heads if isinstance(model, torchvision.models.VisionTransformer) else model.head
    nn.init.normal_(head[0].weight if isinstance(head, nn.Sequential) else head.weight)
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(head(features.vit_backbone(model)(images)), model(images))


def test_head_trained_on_cached_features_equals_end_to_end_training():
    dataset, loss_fn = image_dataset(), nn.CrossEntropyLoss()

    end_to_end = small_torchvision_vit()
    images = DataLoader(dataset, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(5))
    engine.train(end_to_end, images, images, torch.optim.SGD(end_to_end.heads.parameters(), lr=0.5), loss_fn,
                 epochs=3, device="cpu", progress=False)

    cached = small_torchvision_vit()
    in_order = DataLoader(dataset, batch_size=4, shuffle=False)
    stored = features.extract_features(features.vit_backbone(cached), in_order, "cpu", progress=False)
    assert stored.tensors[0].shape == (20, 16) and torch.equal(stored.tensors[1], dataset.tensors[1])
    loader = features.feature_dataloader(stored, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(5))
    engine.train(cached.heads, loader, loader, torch.optim.SGD(cached.heads.parameters(), lr=0.5), loss_fn,
                 epochs=3, device="cpu", progress=False)

    untrained = small_torchvision_vit().heads.parameters()
    for a, b, before in zip(end_to_end.heads.parameters(), cached.heads.parameters(), untrained):
        assert not torch.equal(a, before)  # the head did train
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_vit_backbone_refuses_other_models():
    with pytest.raises(TypeError, match="VisionTransformer"):
        features.vit_backbone(nn.Linear(2, 2))


def test_extract_features_leaves_the_model_in_the_mode_it_was_in():
    model = small_torchvision_vit().eval()
    loader = DataLoader(image_dataset(), batch_size=10)
    features.extract_features(features.vit_backbone(model), loader, "cpu", progress=False)
    assert not any(module.training for module in model.modules())
    model.train()
    features.extract_features(features.vit_backbone(model), loader, "cpu", progress=False)
    assert all(module.training for module in model.modules())


def test_train_head_starts_from_zero_and_is_repeatable_for_a_seed(capsys):
    model = small_torchvision_vit()
    stored = features.extract_features(features.vit_backbone(model), DataLoader(image_dataset(), batch_size=5), "cpu",
                                       progress=False)
    nn.init.normal_(model.heads[0].weight)  # whatever the head held before, it starts at zero
    first = features.train_head(model.heads, stored, stored, "cpu", seed=3, epochs=4, batch_size=4, lr=0.1,
                                val_features=stored)
    weights = model.heads[0].weight.clone()
    second = features.train_head(model.heads, stored, stored, "cpu", seed=3, epochs=4, batch_size=4, lr=0.1,
                                 val_features=stored)
    assert first == second and torch.equal(weights, model.heads[0].weight) and weights.any()
    assert sorted(first) == ["test_acc", "test_loss", "train_acc", "train_loss", "val_acc", "val_loss"]
    assert first["train_loss"][-1] < first["train_loss"][0]
