"""going_modular.attention: class-token maps and their pictures, on tiny models and generated images."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from going_modular.attention import (
    class_token_attention,
    plot_attention_heads,
    plot_attention_over_image,
    upsample_attention_map,
)
from going_modular.model_builder import ViT


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def tiny_vit(img_size=(32, 48)) -> ViT:
    torch.manual_seed(0)
    return ViT(img_size=img_size, patch_size=8, num_transformer_layers=2, embedding_dim=24, mlp_size=48,
               num_heads=4, num_classes=3).eval()


def test_class_token_attention_is_row_zero_without_the_class_token_laid_out_row_major():
    batch, heads, rows, cols = 2, 3, 2, 3
    attention = torch.arange(batch * heads * 7 * 7, dtype=torch.float32).reshape(batch, heads, 7, 7)
    maps = class_token_attention(attention, (rows, cols), batch_index=1)
    assert maps.shape == (heads, rows, cols)
    # Patch p (row-major) is token p + 1; row 0 is the class token's query.
    for head in range(heads):
        for p in range(rows * cols):
            assert maps[head, p // cols, p % cols] == attention[1, head, 0, p + 1]


def test_class_token_attention_on_a_real_vit_with_a_non_square_grid():
    model = tiny_vit(img_size=(32, 48))  # a 4 x 6 grid of 8 x 8 patches
    with torch.no_grad():
        _, attention = model(torch.rand(2, 3, 32, 48), return_attention=True)
    maps = class_token_attention(attention[-1], (4, 6))
    assert maps.shape == (4, 4, 6)
    # Softmax rows sum to 1: the patches get everything the class token does not give itself.
    torch.testing.assert_close(maps.sum(dim=(1, 2)), 1 - attention[-1][0, :, 0, 0])
    assert not maps.requires_grad and maps.device.type == "cpu"


def test_class_token_attention_rejects_wrong_grid_and_shapes():
    with pytest.raises(ValueError, match=r"3 x 3 patch grid plus the class token is 10 tokens, but .* 17 tokens"):
        class_token_attention(torch.rand(1, 2, 17, 17), 3)
    with pytest.raises(ValueError, match=r"\[batch, heads, tokens, tokens\]"):
        class_token_attention(torch.rand(2, 17, 17), 4)
    with pytest.raises(IndexError, match="batch_index 2 is outside a batch of 2"):
        class_token_attention(torch.rand(2, 2, 17, 17), 4, batch_index=2)


def test_upsample_attention_map_keeps_patch_values_with_nearest():
    grid = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    big = upsample_attention_map(grid, (4, 6), mode="nearest")
    assert big.shape == (4, 6)
    assert big[0, 0] == 0 and big[0, 5] == 1 and big[3, 0] == 2 and big[3, 5] == 3
    with pytest.raises(ValueError, match="one map"):
        upsample_attention_map(torch.rand(1, 2, 2), (4, 4))


@pytest.mark.parametrize(
    "image",
    [
        Image.fromarray(np.zeros((32, 48, 3), dtype=np.uint8)),
        torch.rand(3, 32, 48),
        np.random.default_rng(0).integers(0, 256, (32, 48, 3)).astype(np.uint8),
    ],
    ids=["pil", "tensor", "uint8-array"],
)
def test_plot_attention_over_image_draws_image_and_map_at_image_size(image):
    ax = plot_attention_over_image(image, torch.rand(4, 6), title="head 0")
    layers = ax.get_images()
    assert len(layers) == 2
    assert layers[0].get_array().shape[:2] == (32, 48) and layers[1].get_array().shape == (32, 48)
    heat = np.asarray(layers[1].get_array())
    assert heat.min() == pytest.approx(0) and heat.max() == pytest.approx(1)
    assert ax.get_title() == "head 0"


def test_plot_attention_over_image_uniform_map_does_not_divide_by_zero():
    ax = plot_attention_over_image(torch.rand(3, 16, 16), torch.full((2, 2), 0.25))
    assert np.all(np.asarray(ax.get_images()[1].get_array()) == 0)


def test_plot_attention_heads_one_panel_per_head_plus_the_image():
    figure = plot_attention_heads(torch.rand(3, 32, 48), torch.rand(3, 4, 6), suptitle="layer 1")
    assert len(figure.axes) == 4
    assert [ax.get_title() for ax in figure.axes] == ["image", "head 0", "head 1", "head 2"]
    with pytest.raises(ValueError, match="2 titles for 3 heads"):
        plot_attention_heads(torch.rand(3, 32, 48), torch.rand(3, 4, 6), titles=["a", "b"])
