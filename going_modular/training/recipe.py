"""The optimisation recipe of the paper (section 4.1, appendix B.1, Table 3), built from PyTorch's parts: AdamW for
pre-training, SGD for fine-tuning, no weight decay on biases, norms and embeddings, linear warmup then a decay per
step; its clipping at 1.0 is ``engine.train(max_grad_norm=1.0)``. ``TRAINING_RECIPES`` are whole configurations of
``python -m going_modular.train`` under one name."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

# Positions and identities, not feature detectors: decaying them only erases where a patch is (timm's no_weight_decay).
NO_WEIGHT_DECAY_NAMES = ("class_token", "distillation_token", "position_embedding")

DECAY_SCHEDULES = ("cosine", "linear", "none")
OPTIMIZERS = ("adamw", "sgd")

# Flag name -> value. "small-data": the course's recipe for pizza_steak_sushi's 225 photos, chosen on the validation
# set (benchmarks/README.md): the hybrid input (section 3.1), 1 x 1 patches of the stem's 6 x 6 map, 6 layers of
# ViT-Ti's width. "ztm": the ZTM course's ViT-B/16 run (with AdamW). "finetune": every weight of the pretrained
# ViT-Ti/16 fine-tuned as in appendix B.1.1 (batch 32, not 512), with the weights' own architecture and dropout.
TRAINING_RECIPES: dict[str, dict[str, Any]] = {
    "small-data": {
        "model": "vit_ti_16", "stem_channels": [24, 48, 96, 192], "patch_size": 1, "num_transformer_layers": 6,
        "pool": "cls", "image_size": 96, "epochs": 200, "batch_size": 16, "drop_last": True, "optimizer": "adamw",
        "lr": 5e-4, "weight_decay": 0.05, "warmup_epochs": 5, "lr_decay": "cosine", "max_grad_norm": 1.0,
        "label_smoothing": 0.1, "dropout": 0.1, "drop_path_rate": 0.1, "augment": "trivialaugment",
    },
    "ztm": {
        "model": "vit_b_16", "stem_channels": None, "patch_size": None, "num_transformer_layers": None,
        "pool": "cls", "image_size": 224, "epochs": 10, "batch_size": 32, "drop_last": False, "optimizer": "adamw",
        "lr": 3e-3, "weight_decay": 0.3, "warmup_epochs": 0, "lr_decay": "none", "max_grad_norm": None,
        "label_smoothing": 0.0, "dropout": 0.1, "drop_path_rate": 0.0, "augment": "none",
    },
    "finetune": {
        "model": "vit_ti_16_augreg", "image_size": 224, "epochs": 8, "batch_size": 32, "drop_last": False,
        "optimizer": "sgd", "lr": 3e-3, "weight_decay": 0.0, "warmup_epochs": 1, "lr_decay": "cosine",
        "max_grad_norm": 1.0, "label_smoothing": 0.0, "augment": "crop-flip",
    },
}
DEFAULT_TRAINING_RECIPE = "small-data"

# None in a recipe means "off" (written as 0) for these flags, and "the preset's own" (left out) for the others.
_NONE_IS_ZERO = ("stem_channels", "max_grad_norm")
# The flags that build the course's ViT from scratch; a ResNet, or pretrained weights, bring their own architecture.
VIT_FLAGS = ("patch_size", "num_transformer_layers", "stem_channels", "pool", "dropout", "drop_path_rate")


def recipe_as_flags(values: Mapping[str, Any]) -> list[str]:
    """The command-line flags of ``python -m going_modular.train`` that give a recipe's values."""
    flags = []
    for name, value in values.items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        elif value is None:
            flags += [flag, "0"] if name in _NONE_IS_ZERO else []
        else:
            flags += [flag, *map(str, value if isinstance(value, list) else [value])]
    return flags


def model_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``create_vit`` keyword arguments of a recipe (or the parsed flags); None or missing keeps the preset's."""
    dropout = values.get("dropout")
    overrides = {"img_size": values["image_size"], "embedding_dropout": dropout, "proj_dropout": dropout,
                 "mlp_dropout": dropout, **{name: values.get(name) for name in VIT_FLAGS if name != "dropout"}}
    return {name: value for name, value in overrides.items() if value is not None}


def scaled_warmup_epochs(values: Mapping[str, Any], epochs: int) -> int:
    """A recipe's share of warmup for ``epochs`` epochs, rounded; at least 1 if it warms up and epochs > 1."""
    warmup = round(values["warmup_epochs"] * epochs / values["epochs"])
    return max(warmup, 1) if values["warmup_epochs"] and epochs > 1 else warmup


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """[decayed, not decayed] trainable parameters: biases, norms and ``NO_WEIGHT_DECAY_NAMES`` get no decay."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            skip = parameter.ndim < 2 or name.rsplit(".", 1)[-1] in NO_WEIGHT_DECAY_NAMES
            (no_decay if skip else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def create_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.999),
                     optimizer: str = "adamw") -> torch.optim.Optimizer:
    """AdamW with the paper's betas (pre-training, B.1), or SGD with momentum 0.9 (fine-tuning, B.1.1, where
    ``weight_decay`` is 0); either way the weight decay skips biases, norms and embeddings. ValueError for an unknown
    ``optimizer``, or a learning rate or weight decay that torch refuses."""
    # weight_decay is also the default so that torch checks it (ValueError); each group sets its own.
    if optimizer == "sgd":
        return torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=0.9, weight_decay=weight_decay)
    if optimizer != "adamw":
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.")
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, weight_decay=weight_decay)


def create_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, decay: str = "cosine",
                     min_lr_ratio: float = 0.0) -> LRScheduler:
    """Linear warmup to the optimizer's lr, then ``decay`` to ``min_lr_ratio`` of it, per optimisation step (B.1);
    ValueError for an unknown decay, or warmup_steps outside [0, total_steps]."""
    if decay not in DECAY_SCHEDULES:
        raise ValueError(f"decay must be one of {DECAY_SCHEDULES}, got {decay!r}.")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) must be between 0 and total_steps ({total_steps}).")
    decay_steps = max(total_steps - warmup_steps, 1)
    if decay == "cosine":
        eta_min = optimizer.param_groups[0]["lr"] * min_lr_ratio
        after_warmup: LRScheduler = CosineAnnealingLR(optimizer, T_max=decay_steps, eta_min=eta_min)
    else:  # "none" is a linear decay to 1.0 of the peak
        end = min_lr_ratio if decay == "linear" else 1.0
        after_warmup = LinearLR(optimizer, start_factor=1.0, end_factor=end, total_iters=decay_steps)
    if warmup_steps == 0:
        return after_warmup
    warmup = LinearLR(optimizer, start_factor=1.0 / (warmup_steps + 1), end_factor=1.0, total_iters=warmup_steps)
    return SequentialLR(optimizer, schedulers=[warmup, after_warmup], milestones=[warmup_steps])
