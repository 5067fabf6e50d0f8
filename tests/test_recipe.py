"""The paper's optimisation recipe (going_modular.training.recipe) and the augmentation transforms."""
import math

import pytest
import torch
import torchvision
from PIL import Image

from going_modular import data_setup, model_builder
from going_modular.training import recipe
from going_modular.model_builder import ViT


def tiny_vit() -> ViT:
    return ViT(img_size=16, patch_size=8, num_transformer_layers=2, embedding_dim=8, mlp_size=16, num_heads=2,
               num_classes=3)


def test_param_groups_skip_biases_norms_class_token_and_position_embedding():
    model = tiny_vit()
    model.patch_embedding.requires_grad_(False)  # frozen parameters are left out
    decay, no_decay = recipe.param_groups(model, weight_decay=0.3)
    assert decay["weight_decay"] == 0.3 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert {"class_token", "position_embedding", "norm.weight", "norm.bias", "head.bias",
            "transformer_encoder.0.msa_block.qkv.bias"} <= skipped
    assert {"head.weight", "transformer_encoder.1.mlp_block.mlp.0.weight",
            "transformer_encoder.0.msa_block.qkv.weight"} <= decayed
    assert not any(name.startswith("patch_embedding") for name in decayed | skipped)
    trainable = sum(p.requires_grad for p in model.parameters())
    assert len(decayed) + len(skipped) == trainable


def learning_rates(warmup_steps: int, decay: str, total_steps: int = 10) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = recipe.create_scheduler(optimizer, total_steps, warmup_steps, decay)
    rates = []
    for _ in range(total_steps + 1):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_warmup_then_cosine_decay():
    rates = learning_rates(warmup_steps=4, decay="cosine")
    assert rates[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(a > b for a, b in zip(rates[4:], rates[5:]))  # strictly falling after the peak
    assert rates[-1] == pytest.approx(0.0, abs=1e-9)


def test_linear_decay_without_warmup_and_constant():
    assert learning_rates(0, "linear", total_steps=4) == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    assert learning_rates(2, "none", total_steps=4) == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 1.0])


def test_scheduler_rejects_bad_arguments():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="decay must be one of"):
        recipe.create_scheduler(optimizer, 10, decay="step")
    with pytest.raises(ValueError, match="warmup_steps"):
        recipe.create_scheduler(optimizer, 10, warmup_steps=11)


def test_create_optimizer_uses_the_papers_betas():
    optimizer = recipe.create_optimizer(tiny_vit(), lr=3e-3, weight_decay=0.1)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.9, 0.999) and optimizer.defaults["lr"] == 3e-3


def test_create_optimizer_lets_torch_refuse_a_negative_weight_decay():
    # torch checks only the default weight decay, not each group's
    with pytest.raises(ValueError, match="Invalid weight_decay value: -0.1"):
        recipe.create_optimizer(tiny_vit(), lr=3e-3, weight_decay=-0.1)
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        recipe.create_optimizer(tiny_vit(), lr=-1)


def test_sgd_is_the_papers_fine_tuning_optimiser_and_an_unknown_one_is_refused():
    finetune = recipe.TRAINING_RECIPES["finetune"]
    optimizer = recipe.create_optimizer(tiny_vit(), lr=finetune["lr"], weight_decay=finetune["weight_decay"],
                                        optimizer=finetune["optimizer"])
    assert isinstance(optimizer, torch.optim.SGD)
    assert [(group["momentum"], group["weight_decay"]) for group in optimizer.param_groups] == [(0.9, 0.0)] * 2
    with pytest.raises(ValueError, match=r"optimizer must be one of \('adamw', 'sgd'\), got 'adam'"):
        recipe.create_optimizer(tiny_vit(), lr=1e-3, optimizer="adam")


def test_a_resnets_batch_norms_and_biases_are_not_decayed():
    model = torchvision.models.resnet18(num_classes=3)
    decay, no_decay = recipe.param_groups(model, weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, skipped = ({names[id(p)] for p in group["params"]} for group in (decay, no_decay))
    batch_norms = {f"{name}.{kind}" for name, module in model.named_modules()
                   if isinstance(module, torch.nn.BatchNorm2d) for kind in ("weight", "bias")}
    assert len(batch_norms) == 40 and skipped == batch_norms | {"fc.bias"}
    assert decayed == {name for name, p in model.named_parameters() if p.ndim > 1}  # convolutions and fc.weight


def test_the_fine_tuning_schedule_warms_up_for_one_epoch_then_decays_by_a_cosine():
    finetune = recipe.TRAINING_RECIPES["finetune"]
    steps_per_epoch = math.ceil(225 / finetune["batch_size"])  # 8: the last, incomplete batch is a step too
    optimizer = recipe.create_optimizer(tiny_vit(), lr=finetune["lr"], weight_decay=0.0, optimizer="sgd")
    scheduler = recipe.create_scheduler(optimizer, total_steps=steps_per_epoch * finetune["epochs"],
                                        warmup_steps=steps_per_epoch * finetune["warmup_epochs"],
                                        decay=finetune["lr_decay"])
    rates = []
    for _ in range(steps_per_epoch * finetune["epochs"]):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak, warmup, decay = 3e-3, 8, 56
    expected = [peak * (k + 1) / (warmup + 1) for k in range(warmup)]
    expected += [peak * (1 + math.cos(math.pi * k / decay)) / 2 for k in range(decay)]
    assert rates == pytest.approx(expected) and len(rates) == 64


def test_model_overrides_leave_out_what_is_none_or_missing():
    assert recipe.model_overrides({"image_size": 64, "dropout": 0.0, "patch_size": None}) == {
        "img_size": 64, "embedding_dropout": 0.0, "proj_dropout": 0.0, "mlp_dropout": 0.0}


def test_the_recipe_builds_the_model_the_command_line_trains():
    small_data = recipe.TRAINING_RECIPES["small-data"]
    model = model_builder.create_vit(small_data["model"], num_classes=3, **recipe.model_overrides(small_data))
    assert model.num_patches == (96 // 16) ** 2 and len(model.transformer_encoder) == 6
    assert model(torch.zeros(2, 3, 96, 96)).shape == (2, 3)


@pytest.mark.parametrize("policy", [None, "trivialaugment", "randaugment"])
def test_train_and_eval_transforms_give_normalised_tensors(policy):
    image = Image.new("RGB", (120, 90), (255, 0, 0))
    for transform in (data_setup.train_transforms(64, policy), data_setup.eval_transforms(64)):
        tensor = transform(image)
        assert tensor.shape == (3, 64, 64)
        assert tensor.min() >= -1.0 and tensor.max() <= 1.0
    assert data_setup.eval_transforms(64)(image)[0].mean() == pytest.approx(1.0)  # pure red -> +1


def test_unknown_augmentation_policy_is_refused():
    with pytest.raises(ValueError, match="policy must be one of"):
        data_setup.train_transforms(64, "autoaugment-xl")
