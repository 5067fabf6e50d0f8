"""going_modular.figures.figure7: the paper's Figure 7 panels, on tiny ViTs with hand-set weights."""
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from going_modular.figures.figure7 import (
    patch_embedding_principal_components,
    plot_embedding_filters,
    plot_figure7,
    plot_mean_attention_distance,
    plot_position_similarity,
    plot_similarity_of_patches,
    position_embedding_similarity,
)
from going_modular.model_builder import ViT, create_vit


def tiny_vit(img_size=(16, 24), patch_size=4, embedding_dim=48) -> ViT:
    torch.manual_seed(0)
    return ViT(img_size=img_size, patch_size=patch_size, num_transformer_layers=1, embedding_dim=embedding_dim,
               mlp_size=32, num_heads=2, num_classes=3).eval()


def test_principal_components_shape_and_orthonormal():
    model = tiny_vit()  # filters: 48 x 3 x 4 x 4, i.e. 48 points in 48 dimensions
    components = patch_embedding_principal_components(model, num_components=5)
    assert components.shape == (5, 3, 4, 4)
    flat = components.flatten(start_dim=1)
    torch.testing.assert_close(flat @ flat.T, torch.eye(5), atol=1e-5, rtol=0)
    # Signs are fixed: the largest entry of each component (in absolute value) is positive.
    assert bool((flat.gather(1, flat.abs().argmax(dim=1, keepdim=True)) > 0).all())


def test_principal_components_recover_a_known_direction_and_ignore_the_mean():
    model = tiny_vit()
    generator = torch.Generator().manual_seed(1)
    direction = torch.zeros(3 * 4 * 4)
    direction[5], direction[20] = 3.0, -4.0            # unit vector (0.6, -0.8) on two pixels
    direction = direction / direction.norm()
    mean_filter = torch.rand(3 * 4 * 4, generator=generator)
    amounts = torch.linspace(-2, 2, 48)[:, None]        # filters spread only along `direction`
    second = torch.zeros(3 * 4 * 4)
    second[7] = 1.0                                     # a weaker, orthogonal spread
    # +0.1, -0.1, -0.1, +0.1, ...: mean 0 and uncorrelated with `amounts` (symmetric against antisymmetric).
    small = 0.1 * torch.tensor([1.0 if i % 4 in (0, 3) else -1.0 for i in range(48)])[:, None]
    with torch.no_grad():
        model.patch_embedding.patcher.weight.copy_((mean_filter + amounts * direction + small * second).reshape(48, 3, 4, 4))
    components = patch_embedding_principal_components(model, num_components=2).flatten(start_dim=1)
    # Sign convention: the entry of largest magnitude (-0.8) becomes positive.
    torch.testing.assert_close(components[0], -direction, atol=1e-4, rtol=0)
    torch.testing.assert_close(components[1].abs(), second, atol=1e-3, rtol=0)


def test_principal_components_are_the_directions_of_largest_variance_in_order():
    model = tiny_vit()
    weights = model.patch_embedding.patcher.weight.detach().flatten(start_dim=1)
    centred = weights - weights.mean(dim=0)
    components = patch_embedding_principal_components(model, 3).flatten(start_dim=1)
    # The components span the directions of largest variance: projections have decreasing variance.
    variances = (centred @ components.T).var(dim=0)
    assert variances[0] >= variances[1] >= variances[2]
    eigenvalues = torch.linalg.eigvalsh(centred.T @ centred / (weights.shape[0] - 1)).flip(0)[:3]
    torch.testing.assert_close(variances, eigenvalues, rtol=1e-3, atol=1e-6)


def test_principal_components_reject_bad_arguments():
    model = tiny_vit()
    with pytest.raises(ValueError, match=r"between 1 and min\(D, C \* P \* P\) = min\(48, 48\) = 48, got 49"):
        patch_embedding_principal_components(model, 49)
    with pytest.raises(ValueError, match="got 0"):
        patch_embedding_principal_components(model, 0)
    with pytest.raises(TypeError, match="vit_from_torchvision"):
        patch_embedding_principal_components(nn.Linear(2, 2))


def test_position_similarity_shape_diagonal_and_row_major_layout():
    model = tiny_vit(img_size=(16, 24))  # 4 x 6 grid
    similarity = position_embedding_similarity(model)
    assert similarity.shape == (4, 6, 4, 6)
    diagonal = similarity.reshape(24, 24).diagonal()
    torch.testing.assert_close(diagonal, torch.ones(24))
    torch.testing.assert_close(similarity.reshape(24, 24), similarity.reshape(24, 24).T)


def test_position_similarity_known_answer_ignores_the_class_token():
    model = tiny_vit(img_size=(8, 12), embedding_dim=8)  # 2 x 3 grid, 6 patches
    embedding = torch.zeros(1, 7, 8)
    embedding[0, 0] = 100.0                       # the class token: must not matter
    for patch in range(6):
        embedding[0, patch + 1, patch] = 2.0       # orthogonal by default ...
    embedding[0, 1 + 4, 0] = 2.0                  # ... but patch 4 = (row 1, col 1) also points like patch 0
    with torch.no_grad():
        model.position_embedding.copy_(embedding)
    similarity = position_embedding_similarity(model)
    assert similarity[0, 0, 1, 1] == pytest.approx(1 / math.sqrt(2))
    assert similarity[1, 1, 0, 0] == pytest.approx(1 / math.sqrt(2))
    assert similarity[0, 1, 1, 2] == pytest.approx(0.0)
    assert similarity[1, 2, 1, 2] == pytest.approx(1.0)


def test_plot_embedding_filters_draws_a_mosaic_of_tiles_each_stretched_to_0_1():
    components = torch.randn(28, 3, 4, 4)
    figure = plot_embedding_filters(components)
    assert isinstance(figure, plt.Figure)
    image = np.asarray(figure.axes[0].get_images()[0].get_array())
    assert image.shape == (4 * 5 - 1, 7 * 5 - 1, 3)   # 4 rows x 7 columns of 4-pixel tiles, 1-pixel gaps
    assert image.min() == 0 and image.max() == 1
    # The first tile, stretched from its own min to max.
    first = components[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(image[:4, :4], (first - first.min()) / (first.max() - first.min()), rtol=1e-6)
    with pytest.raises(ValueError, match=r"\[k, 1 or 3 channels, P, P\]"):
        plot_embedding_filters(torch.randn(4, 2, 4, 4))


def test_plot_position_similarity_mosaic_and_shared_scale_on_a_given_axes():
    figure, (left, right) = plt.subplots(1, 2)
    similarity = torch.rand(2, 3, 2, 3) * 2 - 1
    returned = plot_position_similarity(similarity, ax=right)
    assert returned is figure and not left.get_images()
    image = right.get_images()[0]
    assert image.get_clim() == (-1, 1)
    mosaic = np.asarray(image.get_array())
    assert mosaic.shape == (2 * 3 - 1, 3 * 4 - 1)
    # The small map of patch (1, 2) sits at row block 1, column block 2.
    np.testing.assert_allclose(mosaic[3:5, 8:11], similarity[1, 2].numpy(), rtol=1e-6)
    assert right.get_xlabel() == "Input patch column" and right.get_ylabel() == "Input patch row"
    with pytest.raises(ValueError, match=r"\[rows, cols, rows, cols\]"):
        plot_position_similarity(torch.rand(2, 3, 3, 2))


def test_plot_mean_attention_distance_one_point_per_head_and_layer():
    distances = torch.tensor([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]])  # 2 layers x 3 heads
    figure = plot_mean_attention_distance(distances, reference_distance=70.0)
    ax = figure.axes[0]
    assert len(ax.collections) == 3
    np.testing.assert_allclose(ax.collections[1].get_offsets(), [[1, 20], [2, 50]])
    assert ax.get_xlabel() == "Network depth (layer)" and ax.get_ylabel() == "Mean attention distance (pixels)"
    assert ax.lines[0].get_ydata()[0] == 70.0
    with pytest.raises(ValueError, match=r"\[layers, heads\]"):
        plot_mean_attention_distance(torch.rand(3))


def test_plot_mean_attention_distance_cuts_off_no_point_and_has_a_readable_legend():
    # The highest point sits above the reference line: the default y axis must still include it.
    distances = torch.tensor([[5.0, 150.0], [120.0, 149.0], [140.0, 160.0]])  # 3 layers x 2 heads
    ax = plot_mean_attention_distance(distances, reference_distance=116.0).axes[0]
    (x_low, x_high), (y_low, y_high) = ax.get_xlim(), ax.get_ylim()
    assert (x_low, x_high) == (0.5, 3.5) and y_low == 0 and y_high > 160.0
    for collection in ax.collections:
        for x, y in collection.get_offsets():
            assert x_low < x < x_high and y_low < y < y_high
    legend = ax.get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["head 1", "head 2", "uniform attention"]
    assert min(text.get_fontsize() for text in legend.get_texts()) >= 8


def test_plot_mean_attention_distance_shared_y_max_and_its_check():
    distances = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    ax = plot_mean_attention_distance(distances, y_max=200.0).axes[0]
    assert ax.get_ylim() == (0.0, 200.0)
    with pytest.raises(ValueError, match="y_max = 100.0 would cut off .* 116.0 pixels"):
        plot_mean_attention_distance(distances, reference_distance=116.0, y_max=100.0)
    # All heads at distance 0 (attention to itself only) still get a visible axis.
    assert plot_mean_attention_distance(torch.zeros(2, 2)).axes[0].get_ylim() == (0.0, 1.0)


def test_plot_figure7_draws_the_three_panels_left_to_right_with_the_label():
    figure, axes = plt.subplots(2, 3)
    components, similarity = torch.randn(28, 3, 4, 4), torch.rand(2, 3, 2, 3)
    distances = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    returned = plot_figure7(components, similarity, distances, axes=axes[1], label="my model", y_max=50.0)
    assert returned is figure
    assert not any(ax.get_images() or ax.collections for ax in axes[0])  # the other row is untouched
    titles = [ax.get_title() for ax in axes[1]]
    assert titles[0].startswith("Embedding filters (first 28 principal components)")
    assert titles[1].startswith("Position embedding similarity") and titles[2].startswith("Mean attention distance")
    assert all(title.endswith("\nmy model") for title in titles)
    assert axes[1][2].get_ylim() == (0.0, 50.0) and len(axes[1][2].collections) == 2
    with pytest.raises(ValueError, match="needs three Axes, got 2"):
        plot_figure7(components, similarity, distances, axes=axes[0][:2])


def test_position_similarity_of_the_hybrid_model_is_laid_out_on_its_token_grid():
    # The course's hybrid: a 4-stage stem (stride 16) and P = 1 on its map, so 96 px make 6 x 6 tokens.
    torch.manual_seed(0)
    model = create_vit("vit_ti_16", num_classes=3, img_size=96, patch_size=1, num_transformer_layers=1,
                       stem_channels=[24, 48, 96, 192])
    similarity = position_embedding_similarity(model)
    assert similarity.shape == (6, 6, 6, 6)
    torch.testing.assert_close(similarity.reshape(36, 36).diagonal(), torch.ones(36))


def test_plot_similarity_of_patches_draws_each_patch_map_enlarged_and_marks_the_patch():
    similarity = torch.rand(3, 4, 3, 4) * 2 - 1
    figure = plot_similarity_of_patches(similarity, [(0, 0), (2, 3)], label="model: ")
    first, second = figure.axes
    np.testing.assert_allclose(second.images[0].get_array(), similarity[2, 3].numpy(), rtol=1e-6)
    assert first.images[0].get_clim() == (-1, 1) and second.get_title() == "model: patch (row 3, column 4)"
    marker = second.patches[0]
    assert (marker.get_x(), marker.get_y(), marker.get_width()) == (2.5, 1.5, 1)  # centred on column 3, row 2
    with pytest.raises(ValueError, match="outside the 3 x 4 grid"):
        plot_similarity_of_patches(similarity, [(3, 0)])
