"""attention.plot_attention_matrix: one head's matrix A beside one of its rows over the image (notebook 02)."""
import pytest
import torch

from going_modular.figures import attention


def _weights(batch: int = 2, heads: int = 3, grid: int = 4) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch, heads, grid * grid + 1, grid * grid + 1).softmax(dim=-1)


def test_left_panel_is_the_chosen_head_counted_from_1_with_a_colour_bar():
    weights = _weights()
    figure = attention.plot_attention_matrix(weights, torch.rand(3, 32, 32), grid_size=4, head=2, batch_index=1)
    image_axes = [axis for axis in figure.axes if axis.images and axis.get_label() != "<colorbar>"]
    assert len(image_axes) == 2 and len(figure.axes) == 4  # two panels, two colour bars
    shown = torch.as_tensor(image_axes[0].images[0].get_array().data)
    torch.testing.assert_close(shown, weights[1, 1])  # "head 2" is index 1
    assert image_axes[0].get_title().startswith("head 2")


def test_right_panel_draws_the_query_row_raw_not_rescaled():
    weights = _weights()
    figure = attention.plot_attention_matrix(weights, torch.rand(3, 32, 32), grid_size=4, head=1, query=6)
    overlay = figure.axes[1].images[-1]  # the right panel: the image, then the attention on top
    row = weights[0, 0, 6, 1:]
    low, high = overlay.get_clim()
    assert low == pytest.approx(row.min().item()) and high == pytest.approx(row.max().item())
    assert "patch 6" in figure.axes[1].get_title()


def test_class_token_row_is_the_default_query():
    figure = attention.plot_attention_matrix(_weights(), torch.rand(3, 32, 32), grid_size=4)
    assert "class token" in figure.axes[1].get_title()


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(head=0), ValueError, r"head counts from 1: expected 1 \.\.\. 3 for 3 heads, got 0"),
    (dict(head=4), ValueError, "got 4"),
    (dict(query=17), ValueError, r"query must be a token 0 \.\.\. 16"),
    (dict(batch_index=2), IndexError, "outside a batch of 2"),
    (dict(grid_size=5), ValueError, "5 x 5 patch grid"),
])
def test_bad_arguments_name_what_was_expected(kwargs, error, message):
    arguments = dict(grid_size=4) | kwargs
    with pytest.raises(error, match=message):
        attention.plot_attention_matrix(_weights(), torch.rand(3, 32, 32), **arguments)


def test_log_scale_colours_the_matrix_from_its_smallest_to_its_largest_weight():
    weights = _weights()
    figure = attention.plot_attention_matrix(weights, torch.rand(3, 32, 32), grid_size=4, log_scale=True)
    norm = figure.axes[0].images[0].norm
    assert type(norm).__name__ == "LogNorm"
    largest = weights[0, 0].max().item()
    assert norm.vmax == pytest.approx(largest)
    assert norm.vmin == pytest.approx(max(weights[0, 0].min().item(), largest * 1e-4))
    spiky = torch.full((1, 1, 5, 5), 1e-9)
    spiky[..., 0] = 1.0  # tiny weights far below the largest: the scale stops four decades down
    norm = attention.plot_attention_matrix(spiky, torch.rand(3, 8, 8), grid_size=2, log_scale=True).axes[0].images[0].norm
    assert norm.vmin == pytest.approx(1e-4) and norm.vmax == pytest.approx(1.0)
    assert "log scale" in figure.axes[2].get_ylabel()
