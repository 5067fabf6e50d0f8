"""Tests for the pictures in going_modular.figures.plotting: image batches (notebook 00), patch grids and
feature maps (notebook 01). Fast: small generated tensors, the Agg backend, every figure closed."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from going_modular.figures import plotting


def _image(height: int = 32, width: int = 48) -> torch.Tensor:
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------------------ plot_image_batch


def test_plot_image_batch_titles_each_image_with_its_class_name():
    images = torch.rand(5, 3, 8, 8)
    labels = torch.tensor([0, 2, 1, 2, 0])
    figure = plotting.plot_image_batch(images, labels, ["pizza", "steak", "sushi"], ncols=3, title="a batch")
    assert isinstance(figure, Figure)
    axes = figure.axes
    assert len(axes) == 6  # 2 rows x 3 columns, the last one empty
    assert [axis.get_title() for axis in axes[:5]] == ["pizza", "sushi", "steak", "sushi", "pizza"]
    assert axes[5].get_title() == "" and not axes[5].images
    assert figure._suptitle.get_text() == "a batch"


def test_plot_image_batch_shows_the_pixels_channels_last():
    images = torch.rand(2, 3, 4, 6)
    figure = plotting.plot_image_batch(images, torch.tensor([0, 1]), ["a", "b"])
    np.testing.assert_allclose(figure.axes[1].images[0].get_array(), images[1].permute(1, 2, 0).numpy())


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (torch.rand(3, 8, 8), torch.tensor([0]), "Expected a batch"),
        (torch.rand(2, 3, 8, 8), torch.tensor([0]), "2 images but 1 labels"),
    ],
)
def test_plot_image_batch_rejects_bad_input(images, labels, message):
    with pytest.raises(ValueError, match=message):
        plotting.plot_image_batch(images, labels, ["a", "b"])


# ------------------------------------------------------------------------------------- rescale_to_unit_range


def test_rescale_to_unit_range_maps_minimum_to_0_and_maximum_to_1_linearly():
    values = torch.tensor([[-2.0, 0.0], [1.0, 6.0]])
    torch.testing.assert_close(plotting.rescale_to_unit_range(values), torch.tensor([[0.0, 0.25], [0.375, 1.0]]))


def test_rescale_to_unit_range_of_a_constant_is_zeros_not_nan():
    assert torch.equal(plotting.rescale_to_unit_range(torch.full((2, 3), 5.0)), torch.zeros(2, 3))


# ------------------------------------------------------------------------------------------- plot_patch_grid


def test_plot_patch_grid_numbers_every_patch_row_by_row():
    figure = plotting.plot_patch_grid(_image(32, 48), patch_size=16)  # 2 x 3 patches
    axis = figure.axes[0]
    assert [text.get_text() for text in axis.texts] == ["1", "2", "3", "4", "5", "6"]
    assert "N = 2 x 3 = 6" in axis.get_title()


def test_plot_patch_grid_places_each_patch_between_gaps():
    image, patch_size, gap = _image(32, 48), 16, 2
    canvas = plotting.plot_patch_grid(image, patch_size, gap=gap).axes[0].images[0].get_array()
    assert canvas.shape == (2 * patch_size + gap, 3 * patch_size + 2 * gap, 3)
    pixels = image.permute(1, 2, 0).numpy()
    # Patch 6 (row 2, column 3) sits after two gaps horizontally and one vertically.
    np.testing.assert_allclose(canvas[18:34, 36:52], pixels[16:32, 32:48])
    np.testing.assert_allclose(canvas[16:18], 1.0)  # the white gap between the rows


def test_plot_patch_grid_can_show_only_the_top_row():
    figure = plotting.plot_patch_grid(_image(32, 48), patch_size=16, num_rows=1, show_numbers=False)
    axis = figure.axes[0]
    assert axis.images[0].get_array().shape[:2] == (16, 3 * 16 + 2 * 2)
    assert len(axis.texts) == 0
    assert "3 of N = 2 x 3 = 6" in axis.get_title()


def test_a_wider_patch_strip_has_larger_numbers():
    image = _image(224, 224)
    small = plotting.plot_patch_grid(image, 16, num_rows=1).axes[0].texts[0].get_fontsize()
    strip = plotting.plot_patch_grid(image, 16, num_rows=1, figure_width=14).axes[0]
    assert strip.figure.get_size_inches()[0] == 14
    assert strip.texts[0].get_fontsize() > small


@pytest.mark.parametrize(
    "image, patch_size, num_rows, message",
    [
        (torch.rand(3, 30, 32), 16, None, "divisible by the patch size 16, got 30 x 32"),
        (torch.rand(1, 3, 32, 32), 16, None, r"Expected one image \[channels, height, width\]"),
        (torch.rand(3, 32, 32), 16, 3, "num_rows must be between 1 and 2"),
    ],
)
def test_plot_patch_grid_rejects_bad_input(image, patch_size, num_rows, message):
    with pytest.raises(ValueError, match=message):
        plotting.plot_patch_grid(image, patch_size, num_rows=num_rows)


# ----------------------------------------------------------------------------------------- plot_feature_maps


def test_plot_feature_maps_shows_the_chosen_channels():
    maps = torch.randn(1, 10, 4, 4)
    figure = plotting.plot_feature_maps(maps, indices=[0, 3, 9], ncols=2, title="maps")
    shown = [axis for axis in figure.axes if axis.images]
    assert [axis.get_title() for axis in shown] == ["channel 0", "channel 3", "channel 9"]
    np.testing.assert_allclose(shown[1].images[0].get_array(), maps[0, 3].numpy())
    assert len(figure.axes) == 4 + 3  # 2 x 2 panels, one left empty, and a colour bar for each map shown


def test_plot_feature_maps_gives_each_map_a_colour_bar_of_its_own_range():
    maps = torch.randn(1, 10, 4, 4)
    maps[0, 9] *= 100  # a channel with a much larger range than the others
    figure = plotting.plot_feature_maps(maps, indices=[0, 9], ncols=2)
    bars = [image.colorbar for axis in figure.axes for image in axis.images]
    assert all(bar is not None for bar in bars) and len(bars) == 2
    for bar, channel in zip(bars, (0, 9)):
        assert bar.vmin == pytest.approx(maps[0, channel].min().item())
        assert bar.vmax == pytest.approx(maps[0, channel].max().item())
    assert len(plotting.plot_feature_maps(maps, indices=[0, 9], colorbar=False).axes) == 2


# ----------------------------------------------------------------------------------------- plot_loss_curves


def test_plot_loss_curves_ticks_whole_epochs_only_and_has_readable_legends():
    results = {"train_loss": [1.0, 0.8, 0.7], "test_loss": [1.1, 0.9, 0.85],
               "train_acc": [0.3, 0.5, 0.6], "test_acc": [0.3, 0.4, 0.5]}
    figure = plotting.plot_loss_curves(results)
    for axis in figure.axes:
        ticks = [tick for tick in axis.get_xticks() if axis.get_xlim()[0] <= tick <= axis.get_xlim()[1]]
        assert ticks and all(float(tick).is_integer() for tick in ticks), ticks
        assert all(text.get_fontsize() >= 10 for text in axis.get_legend().get_texts())


@pytest.mark.parametrize(
    "maps, indices, message",
    [
        (torch.randn(2, 10, 4, 4), [0], r"Expected feature maps \[D, h, w\]"),
        (torch.randn(10, 4, 4), [], "indices is empty"),
        (torch.randn(10, 4, 4), [3, 10], r"\[10\] are out of range for 10 feature maps"),
    ],
)
def test_plot_feature_maps_rejects_bad_input(maps, indices, message):
    with pytest.raises(ValueError, match=message):
        plotting.plot_feature_maps(maps, indices)


def test_plot_augmentations_shows_the_photo_then_random_versions_undoing_the_normalisation():
    from going_modular import data_setup

    photo = Image.new("RGB", (48, 40), (200, 40, 40))
    photo.paste((40, 40, 200), (0, 0, 24, 40))  # left half blue, so crops and flips differ
    torch.manual_seed(0)
    figure = plotting.plot_augmentations(photo, data_setup.train_transforms(32, policy=None), num_samples=5, ncols=3)
    images = [axis.get_images()[0].get_array() for axis in figure.axes if axis.get_images()]
    assert len(images) == 6 and [axis.get_title() for axis in figure.axes[:2]] == ["original", "sample 1"]
    samples = [np.asarray(picture) for picture in images[1:]]
    assert all(sample.shape == (32, 32, 3) and 0 <= sample.min() and sample.max() <= 1 for sample in samples)
    assert any(not np.allclose(samples[0], other) for other in samples[1:])  # random: not all the same
    with pytest.raises(ValueError, match="num_samples must be at least 1"):
        plotting.plot_augmentations(photo, data_setup.train_transforms(32), num_samples=0)


def test_plot_accuracy_against_photos_draws_each_models_mean_and_spread_on_a_log_axis():
    accuracies = {"resnet18": {28: [0.5, 0.6], 225: [0.7, 0.7]}, "vit": {28: [0.4], 225: [0.55, 0.65]}}
    axis = plotting.plot_accuracy_against_photos(accuracies, title="from scratch")
    assert axis.get_xscale() == "log" and axis.get_title() == "from scratch"
    lines = {line.get_label(): line for line in axis.get_lines()}
    assert list(lines["resnet18"].get_xdata()) == [28, 225]
    assert list(lines["resnet18"].get_ydata()) == pytest.approx([0.55, 0.7])
    band = axis.collections[0].get_paths()[0].vertices[:, 1]  # mean +- the sample standard deviation
    assert band.min() == pytest.approx(0.55 - 0.1 / 2 ** 0.5) and band.max() == pytest.approx(0.7)
    assert [tick.get_text() for tick in axis.get_xticklabels()] == ["28", "225"]
