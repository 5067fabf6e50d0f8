"""Count the floating-point operations of a ViT's forward pass, split into the parts of the paper (notebook 04b).
A FLOP is one multiplication or one addition (``FlopCounterMode``'s unit): ViT-B/16 at 224 x 224 costs 35.13 GFLOPs,
17.56 G multiply-adds, the unit many papers call "FLOPs". Attention runs on the math backend, as the CPU's fused
kernel has no formula in ``FlopCounterMode``. On the ``meta`` device the numbers come without computing anything."""
from __future__ import annotations

from collections import Counter

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

VIT_PARTS = ("patch embedding", "attention projections", "attention matmuls", "MLP", "head")


def _count(model: nn.Module, images: torch.Tensor) -> FlopCounterMode:
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        model(images)
    return counter


def forward_flops(model: nn.Module, images: torch.Tensor) -> int:
    """FLOPs (2 per multiply-add) of one forward pass of any ``model`` on the whole batch ``images``."""
    return _count(model, images).get_total_flops()


def vit_flops_by_part(model: nn.Module, images: torch.Tensor) -> dict[str, int]:
    """FLOPs of one forward pass of a ``model_builder.ViT`` on the batch, per part of ``VIT_PARTS``: x_p E of
    equation 1; the qkv and output projections of every MSA block, then its Q K^T and A V (equation 2); both
    linear layers of every MLP (equation 3); the classifier, with any pre-logits layer, on y (equation 4).

    Raises:
        TypeError: ``model`` has no ``transformer_encoder`` of blocks with ``msa_block`` and ``mlp_block``.
        RuntimeError: some FLOPs fall outside the five parts (e.g. a convolutional stem).
    """
    blocks = getattr(model, "transformer_encoder", None)
    if blocks is None or not all(hasattr(block, "msa_block") and hasattr(block, "mlp_block") for block in blocks):
        raise TypeError(f"vit_flops_by_part needs a model_builder.ViT, got {type(model).__name__}.")
    counter = _count(model, images)
    root = type(model).__name__
    flops = Counter({name.removeprefix(f"{root}."): sum(counts.values())  # by module, e.g. flops["head"]; 0 if absent
                     for name, counts in counter.get_flop_counts().items()})
    msa_blocks = [f"transformer_encoder.{index}.msa_block" for index in range(len(blocks))]
    projections = sum(flops[f"{msa}.qkv"] + flops[f"{msa}.proj"] for msa in msa_blocks)
    parts = {"patch embedding": flops["patch_embedding"], "attention projections": projections,
             "attention matmuls": sum(flops[msa] for msa in msa_blocks) - projections,  # outside the blocks' Linears
             "MLP": sum(flops[f"transformer_encoder.{index}.mlp_block"] for index in range(len(blocks))),
             "head": flops["head"] + flops["pre_logits"]}
    if sum(parts.values()) != counter.get_total_flops():
        raise RuntimeError(f"The parts add up to {sum(parts.values()):,} FLOPs but the forward pass counted "
                           f"{counter.get_total_flops():,}: some module of {root} lies outside {VIT_PARTS}.")
    return parts
