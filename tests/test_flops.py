"""going_modular.figures.flops: a ViT's forward FLOPs, split into the parts of equations 1-4 (notebook 04)."""
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from going_modular import model_builder
from going_modular.figures import flops

# 32 x 32 images, 8 x 8 patches: N = 16 patches, n = 17 tokens; D = 24, MLP size 48, 2 layers, 3 classes.
TINY = dict(img_size=32, patch_size=8, num_transformer_layers=2, embedding_dim=24, mlp_size=48, num_heads=4,
            num_classes=3)


def closed_form(batch: int, n: int = 17, patches: int = 16, pixels: int = 8 * 8 * 3, d: int = 24, m: int = 48,
                layers: int = 2, classes: int = 3) -> dict[str, int]:
    """2 FLOPs per multiply-add, written out from the shapes."""
    return {
        "patch embedding": 2 * batch * patches * pixels * d,
        "attention projections": 2 * batch * layers * n * d * (3 * d + d),  # qkv (D -> 3D) and output (D -> D)
        "attention matmuls": 2 * batch * layers * 2 * n * n * d,           # Q K^T and A V, all heads together
        "MLP": 2 * batch * layers * 2 * n * d * m,                          # D -> MLP size -> D
        "head": 2 * batch * d * classes,
    }


@pytest.mark.parametrize("batch", [1, 3])
def test_parts_equal_the_closed_form_and_add_up(batch):
    model = model_builder.ViT(**TINY).eval()
    parts = flops.vit_flops_by_part(model, torch.rand(batch, 3, 32, 32))
    assert list(parts) == list(flops.VIT_PARTS)
    assert parts == closed_form(batch)
    assert sum(parts.values()) == flops.forward_flops(model, torch.rand(batch, 3, 32, 32))


def test_attention_matmuls_are_counted_where_the_fused_cpu_kernel_is_not():
    model = model_builder.ViT(**TINY).eval()
    images = torch.rand(2, 3, 32, 32)
    plain = FlopCounterMode(display=False)
    with torch.no_grad(), plain:  # the default kernel choice
        model(images)
    counted = flops.forward_flops(model, images)
    # The plain count misses exactly Q K^T and A V on a CPU (no formula for the fused kernel); ours has them.
    assert counted - plain.get_total_flops() == closed_form(2)["attention matmuls"]


def test_explicit_attention_gives_the_same_split():
    model = model_builder.ViT(**TINY, fused_attention=False).eval()
    assert flops.vit_flops_by_part(model, torch.rand(1, 3, 32, 32)) == closed_form(1)


def test_vit_b_16_on_meta_is_35_gflops_per_image():
    with torch.device("meta"):
        model = model_builder.create_vit("vit_b_16", num_classes=1000)
        parts = flops.vit_flops_by_part(model, torch.empty(1, 3, 224, 224))
    assert sum(parts.values()) == 35_127_656_448  # 17.56 G multiply-adds
    assert parts["attention matmuls"] == 12 * 2 * 2 * 197 * 197 * 768
    assert parts["head"] == 2 * 768 * 1000


def test_a_model_that_is_not_a_vit_is_refused():
    with pytest.raises(TypeError, match="needs a model_builder.ViT, got Linear"):
        flops.vit_flops_by_part(nn.Linear(4, 2), torch.rand(1, 4))


def test_flops_outside_the_parts_are_reported():
    model = model_builder.ViT(**{**TINY, "img_size": 64}, stem_channels=(8, 16)).eval()  # a stem before equation 1
    with pytest.raises(RuntimeError, match="lies outside"):
        flops.vit_flops_by_part(model, torch.rand(1, 3, 64, 64))
