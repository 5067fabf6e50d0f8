"""going_modular.figures.attention: class-token maps and their pictures, on tiny models and generated images."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from going_modular.figures.attention import (
    class_token_attention,
    plot_attention_heads,
    plot_attention_over_image,
    plot_qkv_heads,
    upsample_attention_map,
)
from going_modular.model_builder import ViT


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
    assert [ax.get_title() for ax in figure.axes] == ["image", "head 1", "head 2", "head 3"]
    with pytest.raises(ValueError, match="2 titles for 3 heads"):
        plot_attention_heads(torch.rand(3, 32, 48), torch.rand(3, 4, 6), titles=["a", "b"])


# ------------------------------------------------------------- attention rollout and mean attention distance
import math

from going_modular.figures.attention import attention_rollout, mean_attention_distance, patch_distances


def row_stochastic(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=generator).softmax(dim=-1)


def test_attention_rollout_without_residual_is_the_product_of_head_averaged_layers_later_layer_on_the_left():
    first, second = row_stochastic(2, 3, 5, 5, seed=1), row_stochastic(2, 3, 5, 5, seed=2)
    rollout = attention_rollout([first, second], residual=False)
    assert rollout.shape == (2, 5, 5)
    torch.testing.assert_close(rollout, second.mean(dim=1) @ first.mean(dim=1))
    # One layer without residual is just the mean over heads.
    torch.testing.assert_close(attention_rollout([first], residual=False), first.mean(dim=1))


def test_attention_rollout_with_residual_mixes_half_identity_into_each_layer():
    layer = row_stochastic(1, 2, 4, 4)
    expected_layer = 0.5 * layer.mean(dim=1) + 0.5 * torch.eye(4)
    torch.testing.assert_close(attention_rollout([layer]), expected_layer)
    torch.testing.assert_close(attention_rollout([layer, layer]), expected_layer @ expected_layer)


def test_attention_rollout_known_answers_identity_and_uniform():
    identity = torch.eye(5).expand(1, 2, 5, 5)
    torch.testing.assert_close(attention_rollout([identity] * 3), torch.eye(5)[None])
    uniform = torch.full((1, 2, 5, 5), 0.2)
    # Uniform attention stays uniform without residual; rows always sum to 1.
    torch.testing.assert_close(attention_rollout([uniform] * 3, residual=False), torch.full((1, 5, 5), 0.2))
    rollout = attention_rollout([uniform, row_stochastic(1, 2, 5, 5)])
    torch.testing.assert_close(rollout.sum(dim=-1), torch.ones(1, 5))


def test_attention_rollout_on_a_real_vit_gives_class_token_maps():
    model = tiny_vit(img_size=(32, 48))
    with torch.no_grad():
        _, attention = model(torch.rand(2, 3, 32, 48), return_attention=True)
    rollout = attention_rollout(attention)
    assert rollout.shape == (2, 25, 25) and not rollout.requires_grad
    torch.testing.assert_close(rollout.sum(dim=-1), torch.ones(2, 25))
    assert class_token_attention(rollout.unsqueeze(1), (4, 6), batch_index=1).shape == (1, 4, 6)


def test_attention_rollout_rejects_empty_and_mismatched_layers():
    with pytest.raises(ValueError, match="at least one layer"):
        attention_rollout([])
    with pytest.raises(ValueError, match=r"Layer 1 has shape \(1, 2, 6, 6\) but layer 0 has \(1, 2, 5, 5\)"):
        attention_rollout([torch.rand(1, 2, 5, 5), torch.rand(1, 2, 6, 6)])
    with pytest.raises(ValueError, match=r"\[batch, heads, tokens, tokens\] for every layer"):
        attention_rollout([torch.rand(2, 5, 5)])


def test_patch_distances_are_pixel_distances_between_centres_in_row_major_order():
    distances = patch_distances((2, 3), patch_size=10)
    assert distances.shape == (6, 6)
    assert distances[0, 1] == pytest.approx(10)          # (0, 0) -> (0, 1)
    assert distances[0, 3] == pytest.approx(10)          # (0, 0) -> (1, 0)
    assert distances[0, 5] == pytest.approx(10 * math.sqrt(5))  # (0, 0) -> (1, 2)
    torch.testing.assert_close(distances, distances.T)
    with pytest.raises(ValueError, match="patch_size must be positive"):
        patch_distances(2, 0)


def attention_from_patch_targets(targets: list[int], heads: int = 1, class_weight: float = 0.0) -> torch.Tensor:
    """Weights [1, heads, N+1, N+1] in which query patch p gives 1 - class_weight to patch targets[p]."""
    tokens = len(targets) + 1
    attention = torch.zeros(1, heads, tokens, tokens)
    attention[..., 0, 0] = 1.0
    for query, key in enumerate(targets):
        attention[..., query + 1, 0] = class_weight
        attention[..., query + 1, key + 1] = 1.0 - class_weight
    return attention


def test_mean_attention_distance_known_answers():
    patch = 16
    # Every patch attends only to itself: distance 0.
    assert mean_attention_distance(attention_from_patch_targets([0, 1, 2, 3]), 2, patch).tolist() == [0.0]
    # On a 2 x 2 grid, every patch attends to the diagonally opposite one: P * sqrt(2) pixels.
    diagonal = mean_attention_distance(attention_from_patch_targets([3, 2, 1, 0]), 2, patch)
    torch.testing.assert_close(diagonal, torch.tensor([patch * math.sqrt(2)]))
    # On a 1 x 2 grid with uniform attention over both patches: half of the time 0, half P.
    uniform = torch.full((1, 1, 3, 3), 1 / 3)
    torch.testing.assert_close(mean_attention_distance(uniform, (1, 2), patch), torch.tensor([patch / 2]))


def test_mean_attention_distance_excludes_the_class_token_and_renormalises_by_default():
    # Every query gives half its weight to the class token, half to its horizontal neighbour (P away).
    attention = attention_from_patch_targets([1, 0, 3, 2], class_weight=0.5)
    torch.testing.assert_close(mean_attention_distance(attention, 2, 16), torch.tensor([16.0]))
    torch.testing.assert_close(mean_attention_distance(attention, 2, 16, renormalize=False), torch.tensor([8.0]))


def test_mean_attention_distance_one_value_per_head_averaged_over_images():
    near = attention_from_patch_targets([0, 1, 2, 3])   # head 0 of image 0: distance 0
    far = attention_from_patch_targets([3, 2, 1, 0])    # distance 16 sqrt(2)
    image_0 = torch.cat([near, far], dim=1)             # heads: near, far
    image_1 = torch.cat([far, far], dim=1)
    distances = mean_attention_distance(torch.cat([image_0, image_1]), 2, 16)
    expected = torch.tensor([8 * math.sqrt(2), 16 * math.sqrt(2)])
    assert distances.shape == (2,)
    torch.testing.assert_close(distances, expected)


def test_mean_attention_distance_on_a_real_vit_is_within_the_image():
    model = tiny_vit(img_size=(32, 48))
    with torch.no_grad():
        _, attention = model(torch.rand(2, 3, 32, 48), return_attention=True)
    distances = mean_attention_distance(attention[0], (4, 6), 8)
    assert distances.shape == (4,)
    assert bool((distances > 0).all()) and bool((distances < math.hypot(24, 40)).all())
    with pytest.raises(ValueError, match="3 x 3 patch grid plus the class token is 10 tokens"):
        mean_attention_distance(attention[0], 3, 8)


def test_plot_qkv_heads_draws_each_head_once_in_the_bar_and_once_in_its_block():
    figure = plot_qkv_heads(num_heads=4, head_dim=8)
    rectangles = [patch for patch in figure.axes[0].patches if isinstance(patch, plt.Rectangle)]
    assert len(rectangles) == 2 * 3 * 4  # 12 slices of the qkv bar, 12 rows of the q, k and v blocks
    texts = {text.get_text() for text in figure.axes[0].texts}
    assert {"q: [heads = 4, D_h = 8]", "v: 4 heads x 8", "head 1", "head 4"} <= texts
    with pytest.raises(ValueError, match="at least 1"):
        plot_qkv_heads(num_heads=0)
