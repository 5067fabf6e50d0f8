"""The ViT of going_modular.model_builder: shapes of equations 1-4, Table 1 counts (parity: test_pretrained.py)."""
import subprocess
import sys

import pytest
import torch
from torch import nn

from going_modular import model_builder
from going_modular.model_builder import (
    ConvStem,
    MLPBlock,
    MultiheadSelfAttentionBlock,
    PatchEmbedding,
    TransformerEncoderBlock,
    ViT,
    create_vit,
)

TINY = dict(img_size=32, patch_size=8, num_transformer_layers=2, embedding_dim=24, mlp_size=48, num_heads=4)


def count(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# Equation 1
def test_patch_embedding_shape_square_and_non_square():
    embed = PatchEmbedding(in_channels=3, patch_size=16, embedding_dim=768)
    assert embed(torch.randn(2, 3, 224, 224)).shape == (2, 196, 768)
    assert embed(torch.randn(2, 3, 64, 128)).shape == (2, 4 * 8, 768)


def test_patch_embedding_is_flatten_then_linear_projection():
    embed = PatchEmbedding(in_channels=3, patch_size=4, embedding_dim=10)
    image = torch.randn(1, 3, 8, 12)
    patches = image.unfold(2, 4, 4).unfold(3, 4, 4)  # [1, 3, 2, 3, 4, 4]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(1, 6, 3 * 4 * 4)
    weight = embed.patcher.weight.reshape(10, -1)
    expected = patches @ weight.T + embed.patcher.bias
    torch.testing.assert_close(embed(image), expected)


@pytest.mark.parametrize(
    "shape, fragment",
    [
        ((1, 3, 30, 32), "divisible by the patch size 16, got 30 x 32"),
        ((1, 1, 32, 32), "Expected 3 colour channels, got 1"),
        ((3, 32, 32), "Expected a batch of images"),
    ],
)
def test_patch_embedding_rejects_bad_inputs_with_value_error(shape, fragment):
    with pytest.raises(ValueError, match=fragment):
        PatchEmbedding(patch_size=16)(torch.randn(*shape))


# Equations 2 and 3
def test_msa_block_shape_and_fused_equals_explicit():
    torch.manual_seed(0)
    block = MultiheadSelfAttentionBlock(embedding_dim=32, num_heads=4).eval()
    x = torch.randn(3, 17, 32)
    fused = block(x)
    explicit, weights = block(x, return_attention=True)
    assert fused.shape == (3, 17, 32)
    assert weights.shape == (3, 4, 17, 17)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(3, 4, 17))
    torch.testing.assert_close(fused, explicit, atol=1e-6, rtol=1e-5)


def test_msa_block_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ours = MultiheadSelfAttentionBlock(embedding_dim=32, num_heads=4).eval()
    reference = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    reference.in_proj_weight.data.copy_(ours.qkv.weight)
    reference.in_proj_bias.data.copy_(ours.qkv.bias)
    reference.out_proj.load_state_dict(ours.proj.state_dict())
    x = torch.randn(2, 9, 32)
    normed = ours.layer_norm(x)
    expected, expected_weights = reference(normed, normed, normed, average_attn_weights=False)
    out, weights = ours(x, return_attention=True)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)


def test_msa_block_rejects_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiheadSelfAttentionBlock(embedding_dim=30, num_heads=4)


def test_mlp_block_shape_and_layers():
    block = MLPBlock(embedding_dim=16, mlp_size=64, dropout=0.1)
    assert block(torch.randn(2, 5, 16)).shape == (2, 5, 16)
    kinds = [type(layer) for layer in block.mlp]
    assert kinds == [nn.Linear, nn.GELU, nn.Dropout, nn.Linear, nn.Dropout]


def test_encoder_block_has_both_residuals():
    block = TransformerEncoderBlock(embedding_dim=16, num_heads=2, mlp_size=32).eval()
    for branch in (block.msa_block.proj, block.mlp_block.mlp[3]):
        nn.init.zeros_(branch.weight)
        nn.init.zeros_(branch.bias)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(block(x), x)  # both branches output zero: only the residuals remain


def test_drop_path_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    block = TransformerEncoderBlock(embedding_dim=16, num_heads=2, mlp_size=32, drop_path=0.5,
                                    proj_dropout=0.0, mlp_dropout=0.0)
    x = torch.randn(64, 5, 16)
    block.eval()
    torch.testing.assert_close(block(x), block(x))
    block.train()
    outputs = block(x)
    unchanged = (outputs - x).abs().flatten(1).amax(dim=1) == 0
    assert 0 < unchanged.sum() < 64  # some samples skipped both branches, others did not


def test_drop_path_rate_rises_linearly_with_depth():
    model = ViT(**TINY, drop_path_rate=0.2, num_classes=3)
    rates = [block.drop_path.p if hasattr(block.drop_path, "p") else 0.0 for block in model.transformer_encoder]
    assert rates == pytest.approx([0.0, 0.2])


# Equation 4 and the whole model
def test_vit_output_shape_and_attention():
    model = ViT(**TINY, num_classes=5).eval()
    images = torch.randn(2, 3, 32, 32)
    logits, attention = model(images, return_attention=True)
    assert model(images).shape == (2, 5)
    assert logits.shape == (2, 5)
    assert len(attention) == 2 and attention[0].shape == (2, 4, 17, 17)
    assert model.forward_features(images).shape == (2, 17, 24)


def test_vit_non_square_images():
    model = ViT(**{**TINY, "img_size": (32, 48)}, num_classes=3)
    assert model(torch.randn(2, 3, 32, 48)).shape == (2, 3)
    assert model.position_embedding.shape == (1, 4 * 6 + 1, 24)
    assert model.grid_size == (4, 6) and model.num_patches == 4 * 6


def test_vit_rejects_wrong_image_size_naming_both():
    model = ViT(**TINY, num_classes=3)
    with pytest.raises(ValueError, match="built for 32 x 32 images but got 40 x 40"):
        model(torch.randn(1, 3, 40, 40))


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(img_size=30), "must be divisible by the patch size 8, got 30 x 30. Resize the image, e.g. to 32 x 32"),
    (dict(img_size=(32, 0)), r"img_size must be positive, got \(32, 0\)"),
    (dict(pool="max"), "pool must be"),
])
def test_vit_rejects_bad_configuration(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        ViT(**{**TINY, **kwargs})


def test_mean_pool_uses_patch_tokens_not_class_token():
    torch.manual_seed(0)
    model = ViT(**TINY, num_classes=3, pool="mean").eval()
    nn.init.normal_(model.head.weight)
    images = torch.randn(2, 3, 32, 32)
    features = model.forward_features(images)
    torch.testing.assert_close(model(images), model.head(features[:, 1:].mean(dim=1)))


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_forward_head_pre_logits_is_what_the_head_sees(pool):
    torch.manual_seed(0)
    model = ViT(**TINY, num_classes=3, pool=pool, representation_size=10).eval()
    nn.init.normal_(model.head.weight)
    images = torch.randn(2, 3, 32, 32)
    features = model.forward_features(images)
    pooled = features[:, 0] if pool == "cls" else features[:, 1:].mean(dim=1)
    pre_logits = model.forward_head(features, pre_logits=True)
    torch.testing.assert_close(pre_logits, model.pre_logits(pooled))
    assert pre_logits.shape == (2, 10)
    torch.testing.assert_close(model.head(pre_logits), model(images))


def test_initialisation_follows_the_paper_not_randn():
    model = ViT(**TINY, num_classes=3)
    assert torch.count_nonzero(model.class_token) == 0
    assert 0.01 < model.position_embedding.std().item() < 0.03
    assert torch.count_nonzero(model.head.weight) == 0


# Every dropout but the attention dropout is off, so any randomness in the outputs comes from it.
ONLY_ATTENTION_DROPOUT = dict(proj_dropout=0.0, mlp_dropout=0.0, embedding_dropout=0.0, drop_path_rate=0.0)


@pytest.mark.parametrize("fused_attention, return_attention", [
    (True, False),   # F.scaled_dot_product_attention's dropout_p
    (False, False),  # the explicit softmax(q k^T / sqrt(d)) path
    (True, True),    # asking for the weights also takes the explicit path
])
def test_attn_dropout_acts_in_every_block_in_training_only(fused_attention, return_attention):
    def features(model: ViT, images: torch.Tensor) -> torch.Tensor:
        out = model.forward_features(images, return_attention=return_attention)
        return out[0] if return_attention else out

    def block_output(block: MultiheadSelfAttentionBlock, tokens: torch.Tensor) -> torch.Tensor:
        out = block(tokens, return_attention=return_attention)
        return out[0] if return_attention else out

    torch.manual_seed(0)
    images, tokens = torch.randn(2, 3, 32, 32), torch.randn(2, 17, 24)
    with torch.no_grad():
        model = ViT(**TINY, attn_dropout=0.5, fused_attention=fused_attention, **ONLY_ATTENTION_DROPOUT).train()
        assert (features(model, images) - features(model, images)).abs().max() > 1e-3
        for block in model.transformer_encoder:  # each block's own attention, on the same input twice
            assert (block_output(block.msa_block, tokens) - block_output(block.msa_block, tokens)).abs().max() > 1e-3

        model.eval()
        assert torch.equal(features(model, images), features(model, images))
        for block in model.transformer_encoder:
            assert torch.equal(block_output(block.msa_block, tokens), block_output(block.msa_block, tokens))

        # Without attention dropout, training mode is deterministic: the randomness above was the attention's.
        model = ViT(**TINY, attn_dropout=0.0, fused_attention=fused_attention, **ONLY_ATTENTION_DROPOUT).train()
        assert torch.equal(features(model, images), features(model, images))


def test_qkv_bias_false_removes_the_bias_of_every_block():
    with_bias, no_bias = ViT(**TINY), ViT(**TINY, qkv_bias=False)
    assert all(block.msa_block.qkv.bias is None for block in no_bias.transformer_encoder)
    layers, embedding_dim = TINY["num_transformer_layers"], TINY["embedding_dim"]
    assert count(with_bias) - count(no_bias) == layers * 3 * embedding_dim  # q, k and v biases of every layer


# Table 1
@pytest.mark.parametrize("name, num_classes, expected", [
    ("vit_b_16", 3, 85_800_963),
    ("vit_b_16", 1000, 86_567_656),
    ("vit_l_16", 1000, 304_326_632),
    ("vit_h_14", 1000, 632_045_800),
])
def test_table_1_parameter_counts(name, num_classes, expected):
    with torch.device("meta"):  # count without allocating (ViT-H/14 would need 2.5 GB)
        model = create_vit(name, num_classes=num_classes)
    assert count(model) == expected


def test_small_presets_build_and_unknown_name_is_refused():
    assert create_vit("vit_ti_16", num_classes=3, img_size=32)(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(ValueError, match="Unknown ViT preset 'vit_x'"):
        create_vit("vit_x")


# Pretrained weights live in going_modular.pretrained (tested in test_pretrained.py), which imports this module,
# never the other way round.
def test_model_builder_neither_imports_nor_reexports_pretrained():
    code = ("import sys; from going_modular import model_builder; "
            "assert 'going_modular.pretrained' not in sys.modules, 'model_builder imported pretrained'; "
            "assert not hasattr(model_builder, 'vit_from_torchvision'), 'model_builder re-exports pretrained names'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_builder_still_refuses_unknown_names():
    with pytest.raises(AttributeError, match="no attribute 'vit_from_nowhere'"):
        model_builder.vit_from_nowhere


# The hybrid model (section 3.1)
def test_conv_stem_halves_the_image_per_stage_and_the_hybrid_makes_one_token_per_position():
    stem = ConvStem(in_channels=3, channels=(8, 16, 32))
    assert stem(torch.randn(2, 3, 48, 64)).shape == (2, 32, 6, 8) and stem.stride == 8
    model = ViT(img_size=(48, 64), patch_size=1, num_transformer_layers=1, embedding_dim=16, mlp_size=32,
                num_heads=2, num_classes=3, stem_channels=(8, 16, 32))
    assert model.grid_size == (6, 8) and model.num_patches == 6 * 8
    assert model.position_embedding.shape == (1, 6 * 8 + 1, 16)
    assert model.forward_features(torch.randn(2, 3, 48, 64)).shape == (2, 6 * 8 + 1, 16)
    assert model.patch_embedding.patcher.in_channels == 32 and model.patch_embedding.patcher.kernel_size == (1, 1)
    # 2 x 2 patches of the stem's map: each token covers 16 x 16 pixels
    coarse = ViT(img_size=64, patch_size=2, num_transformer_layers=1, embedding_dim=16, mlp_size=32, num_heads=2,
                 stem_channels=(8, 16, 32))
    assert coarse.grid_size == (4, 4) and coarse.num_patches == 4 * 4
    with pytest.raises(ValueError, match="divisible by the patch size 8"):
        ViT(img_size=60, patch_size=1, num_transformer_layers=1, embedding_dim=16, mlp_size=32, num_heads=2,
            stem_channels=(8, 16, 32))


def test_gradients_reach_the_hybrid_stem_and_the_plain_path_has_no_stem():
    torch.manual_seed(0)
    plain = ViT(**TINY, num_classes=3)
    assert not any(name.startswith("stem.") for name, _ in plain.named_parameters())
    assert not list(plain.buffers())  # the plain ViT has no BatchNorm statistics
    hybrid = ViT(**{**TINY, "patch_size": 2}, num_classes=3, stem_channels=(8, 16))
    assert {name.split(".")[0] for name, _ in hybrid.named_parameters()} >= {"stem", "patch_embedding"}
    images = torch.randn(4, 3, 32, 32)
    nn.init.normal_(hybrid.head.weight)  # the zero head of section 3.2 would pass no gradient back
    hybrid.train()
    logits = hybrid(images)
    logits.sum().backward()
    assert hybrid.stem.layers[0].weight.grad.abs().sum() > 0  # gradients reach the stem
