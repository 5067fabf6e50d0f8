"""Count the floating-point operations of a ViT's forward pass, split into the parts of the paper (notebook 04).

A FLOP is one multiplication or one addition (``FlopCounterMode``'s definition): ViT-B/16 at 224 x 224 costs
35.13 GFLOPs, i.e. 17.56 G multiply-adds, the unit many papers call "FLOPs". Attention runs on the math backend:
the CPU's fused kernel has no formula in ``FlopCounterMode``, so Q K^T and A V would count as 0. A model and input
on the ``meta`` device give the same numbers without allocating or computing anything.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

VIT_PARTS = ("patch embedding", "attention projections", "attention matmuls", "MLP", "head")


def _count(model: nn.Module, images: torch.Tensor) -> FlopCounterMode:
    """Run ``model(images)`` once under FlopCounterMode, attention on the math backend; return the counter."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), counter:
        model(images)
    return counter


def forward_flops(model: nn.Module, images: torch.Tensor) -> int:
    """FLOPs (2 per multiply-add) of one forward pass of any ``model`` on the whole batch ``images``."""
    return _count(model, images).get_total_flops()


def vit_flops_by_part(model: nn.Module, images: torch.Tensor) -> dict[str, int]:
    """FLOPs of one forward pass of a ``model_builder.ViT`` on the batch, per part, in the order of ``VIT_PARTS``:

    * "patch embedding": the patch projection x_p E of equation 1 (a convolution);
    * "attention projections": the qkv and output projections of every MSA block (equation 2);
    * "attention matmuls": Q K^T and A V of every MSA block, the only products with no weights;
    * "MLP": both linear layers of every MLP block (equation 3);
    * "head": the classifier (and the pre-logits layer, if any) on y of equation 4.

    Raises:
        TypeError: ``model`` has no ``transformer_encoder`` of blocks with ``msa_block`` and ``mlp_block``.
        RuntimeError: some FLOPs fall outside the five parts (e.g. a convolutional stem).
    """
    blocks = getattr(model, "transformer_encoder", None)
    if blocks is None or not all(hasattr(block, "msa_block") and hasattr(block, "mlp_block") for block in blocks):
        raise TypeError(f"vit_flops_by_part needs a model_builder.ViT, got {type(model).__name__}.")
    counter = _count(model, images)
    per_module = counter.get_flop_counts()
    root = type(model).__name__

    def flops(name: str) -> int:
        return sum(per_module.get(f"{root}.{name}", {}).values())

    parts = dict.fromkeys(VIT_PARTS, 0)
    parts["patch embedding"] = flops("patch_embedding")
    for index in range(len(blocks)):
        msa = f"transformer_encoder.{index}.msa_block"
        projections = flops(f"{msa}.qkv") + flops(f"{msa}.proj")
        parts["attention projections"] += projections
        parts["attention matmuls"] += flops(msa) - projections  # what the block computes outside its Linears
        parts["MLP"] += flops(f"transformer_encoder.{index}.mlp_block")
    parts["head"] = flops("head") + flops("pre_logits")
    total = counter.get_total_flops()
    if sum(parts.values()) != total:
        raise RuntimeError(f"The parts add up to {sum(parts.values()):,} FLOPs but the forward pass counted "
                           f"{total:,}: some module of {root} lies outside {VIT_PARTS}.")
    return parts
