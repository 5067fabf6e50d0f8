"""The optimisation recipe of the paper (section 4.1, appendix B.1, Table 3), built from PyTorch's parts.

    Adam(W), beta1 = 0.9, beta2 = 0.999, weight decay 0.1 (pre-training)    -> ``create_optimizer``
    no weight decay on biases, norms, class token, position embedding      -> ``param_groups``
    linear warmup, then cosine or linear decay, per optimisation step      -> ``create_scheduler``
    global-norm gradient clipping at 1.0                                   -> ``engine.train(max_grad_norm=1.0)``

Used by ``python -m going_modular.train`` and notebook 05, which also start from ``TRAINING_RECIPES``:
whole training configurations (model, image size, schedule, augmentation) under one name.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

# Parameters that hold positions or identities, not feature detectors: decaying them towards zero
# only erases what the model learnt about where a patch is (timm's ``no_weight_decay`` does the same).
NO_WEIGHT_DECAY_NAMES = ("class_token", "position_embedding")

DECAY_SCHEDULES = ("cosine", "linear", "none")

# Whole configurations of ``python -m going_modular.train`` (flag name -> value; ``--recipe NAME`` picks one,
# and any flag given on the command line overrides it).
#
# "small-data" is the course's recipe for the 225 photos of pizza_steak_sushi, chosen on the validation
# set (benchmarks/README.md, "On the validation set", has the search and its numbers): the paper's hybrid
# input (section 3.1), a convolutional stem whose 6 x 6 feature map at 96 px is cut into 1 x 1 patches, in
# front of 6 encoder layers of ViT-Ti's width (D = 192, 3 heads), trained for 200 epochs; AdamW with 5
# epochs of warmup, cosine decay and clipping (Table 3's ingredients), label smoothing, dropout, stochastic
# depth, and crops, flips and TrivialAugment.
#
# "ztm" is the ZTM course's run: ViT-B/16 at 224 px, batch 32, 10 epochs, learning rate 3e-3 and weight
# decay 0.3 (Table 3's ImageNet row), constant learning rate, no augmentation (here with AdamW's
# decoupled weight decay and its no-decay groups, where the ZTM course uses Adam's L2 penalty).
TRAINING_RECIPES: dict[str, dict[str, Any]] = {
    "small-data": {
        "model": "vit_ti_16", "stem_channels": [24, 48, 96, 192], "patch_size": 1, "num_transformer_layers": 6,
        "pool": "cls", "image_size": 96, "epochs": 200, "batch_size": 16, "drop_last": True,
        "lr": 5e-4, "weight_decay": 0.05, "warmup_epochs": 5, "lr_decay": "cosine", "max_grad_norm": 1.0,
        "label_smoothing": 0.1, "dropout": 0.1, "drop_path_rate": 0.1, "augment": "trivialaugment",
    },
    "ztm": {
        "model": "vit_b_16", "stem_channels": None, "patch_size": None, "num_transformer_layers": None,
        "pool": "cls", "image_size": 224, "epochs": 10, "batch_size": 32, "drop_last": False,
        "lr": 3e-3, "weight_decay": 0.3, "warmup_epochs": 0, "lr_decay": "none", "max_grad_norm": None,
        "label_smoothing": 0.0, "dropout": 0.1, "drop_path_rate": 0.0, "augment": "none",
    },
}
DEFAULT_TRAINING_RECIPE = "small-data"


def scaled_warmup_epochs(values: dict[str, Any], epochs: int) -> int:
    """A recipe's warmup for a run of ``epochs`` epochs instead of its own: the same share of the run.

    Rounded, and at least one epoch when the recipe warms up and the run is longer than one epoch, so that
    a short run of the small-data recipe (5 warmup epochs of 200) still starts gently: 1 of 20 or of 40, 0 of 1.

    Args:
        values: a recipe of ``TRAINING_RECIPES`` (its ``epochs`` and ``warmup_epochs``).
        epochs: the run's number of epochs.
    """
    warmup = round(values["warmup_epochs"] * epochs / values["epochs"])
    return max(warmup, 1) if values["warmup_epochs"] and epochs > 1 else warmup


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split the trainable parameters into a weight-decay group and a no-weight-decay group.

    Matrices and convolution kernels (2 or more dimensions) are decayed; biases, LayerNorm scales and
    shifts (1 dimension) and the parameters named in ``NO_WEIGHT_DECAY_NAMES`` are not.

    Args:
        model: the model to optimise (frozen parameters are left out).
        weight_decay: decay of the first group.

    Returns:
        Two parameter groups for a torch optimizer: ``[{"params": ..., "weight_decay": weight_decay},
        {"params": ..., "weight_decay": 0.0}]``.
    """
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        skip = parameter.ndim < 2 or name.rsplit(".", 1)[-1] in NO_WEIGHT_DECAY_NAMES
        (no_decay if skip else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def create_optimizer(
    model: nn.Module, lr: float, weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.999)
) -> torch.optim.AdamW:
    """AdamW with the paper's betas and decoupled weight decay that skips biases, norms and embeddings.

    Args:
        model: the model to optimise.
        lr: the peak learning rate (reached after warmup).
        weight_decay: decoupled weight decay for weight matrices (the paper: 0.1 for pre-training).
        betas: Adam's beta1, beta2 (the paper: 0.9, 0.999).
    """
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas)


def create_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    decay: str = "cosine",
    min_lr_ratio: float = 0.0,
) -> LRScheduler:
    """Linear warmup from near zero to the optimizer's learning rate, then decay to ``min_lr_ratio`` of it.

    Step it once per optimisation step (``engine.train(scheduler=...)`` does), not once per epoch.

    Args:
        optimizer: its current learning rate is the peak.
        total_steps: optimisation steps in the whole run (epochs x steps per epoch).
        warmup_steps: steps of linear warmup (the paper: 10k steps of 1M+); 0 for none.
        decay: "cosine", "linear" (the paper uses both, appendix B.1) or "none" (constant after warmup).
        min_lr_ratio: the final learning rate as a fraction of the peak.

    Raises:
        ValueError: for an unknown decay, or warmup_steps outside [0, total_steps].
    """
    if decay not in DECAY_SCHEDULES:
        raise ValueError(f"decay must be one of {DECAY_SCHEDULES}, got {decay!r}.")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) must be between 0 and total_steps ({total_steps}).")
    decay_steps = max(total_steps - warmup_steps, 1)
    if decay == "cosine":
        peak_lr = optimizer.param_groups[0]["lr"]
        after_warmup: LRScheduler = CosineAnnealingLR(optimizer, T_max=decay_steps, eta_min=peak_lr * min_lr_ratio)
    elif decay == "linear":
        after_warmup = LinearLR(optimizer, start_factor=1.0, end_factor=min_lr_ratio, total_iters=decay_steps)
    else:
        after_warmup = LinearLR(optimizer, start_factor=1.0, end_factor=1.0, total_iters=1)
    if warmup_steps == 0:
        return after_warmup
    warmup = LinearLR(optimizer, start_factor=1.0 / (warmup_steps + 1), end_factor=1.0, total_iters=warmup_steps)
    return SequentialLR(optimizer, schedulers=[warmup, after_warmup], milestones=[warmup_steps])
