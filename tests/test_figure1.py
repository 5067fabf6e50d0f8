"""going_modular.figures.figure1: the paper's Figure 1 with the shapes the package's ViT really produces."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from going_modular import model_builder
from going_modular.common import settings
from going_modular.figures import figure1

VIT_B_16_SHAPES = ["[1, 3, 224, 224]", "[1, 196, 768]", "[1, 197, 768]", "[1, 768]", "[1, 1000]"]


def _texts(figure: Figure) -> list[str]:
    return [text.get_text() for text in figure.findobj(Text) if text.get_text().strip()]


def _has(figure: Figure, fragment: str) -> bool:
    return any(fragment in text for text in _texts(figure))


def test_vit_b_16_shapes_are_traced_from_the_model():
    shapes = figure1.vit_shapes("vit_b_16")
    assert shapes.name == "ViT-B/16"
    assert (shapes.num_patches, shapes.patch_numbers, shapes.num_layers, shapes.num_heads) == (196, 768, 12, 12)
    assert shapes.image == (1, 3, 224, 224) and shapes.grid_size == (14, 14)
    assert shapes.patch_embeddings == (1, 196, 768)
    assert shapes.tokens == shapes.encoder_output == (1, 197, 768)
    assert shapes.class_token_output == (1, 768)
    assert shapes.logits == (1, 1000)
    assert figure1.vit_shapes("vit_b_16", num_classes=3).logits == (1, 3)


def test_other_presets_give_their_own_shapes():
    shapes = figure1.vit_shapes("vit_h_14")  # 224 / 14 = 16 patches a side; P * P * C = 588
    assert (shapes.num_patches, shapes.patch_numbers, shapes.grid_size) == (256, 588, (16, 16))
    assert shapes.tokens == (1, 257, 1280)
    assert figure1.vit_shapes("vit_ti_16").patch_embeddings == (1, 196, 192)


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="Choose one of: vit_ti_16"):
        figure1.vit_shapes("vit_b_32")


def test_figure_writes_vit_b_16_shapes_on_its_arrows():
    figure = figure1.plot_vit_overview()
    for shape in VIT_B_16_SHAPES:
        assert _has(figure, shape), shape
    for fragment in ("196 patches of 16 × 16 × 3 = 768 numbers", "E: 768 × 768", "L = 12 blocks", "(12 heads)",
                     "768 → 3072 → 768", "MLP head", "196 + 1 = 197 tokens", "1000 ImageNet classes"):
        assert _has(figure, fragment), fragment


def test_shapes_follow_the_preset_not_typed_numbers(monkeypatch):
    monkeypatch.setitem(model_builder.VIT_PRESETS, "vit_b_16", {**model_builder.VIT_PRESETS["vit_b_16"],
                                                                "embedding_dim": 384, "num_heads": 6})
    figure = figure1.plot_vit_overview(num_classes=3)
    assert _has(figure, "[1, 197, 384]") and _has(figure, "[1, 3]") and _has(figure, "E: 768 × 384")
    assert not _has(figure, "[1, 197, 768]")


@pytest.mark.parametrize("preset", ["vit_b_16", "vit_h_14"])
def test_no_text_overlaps_another_or_leaves_the_figure(preset):
    figure = figure1.plot_vit_overview(preset=preset)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    boxes = [(text.get_text(), text.get_window_extent(renderer)) for text in figure.findobj(Text)
             if text.get_visible() and text.get_text().strip()]
    overlapping = [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]
    assert overlapping == []
    outside = [text for text, box in boxes if not figure.bbox.contains(box.x0, box.y0)
               or not figure.bbox.contains(box.x1, box.y1)]
    assert outside == []


def test_a_photo_is_cut_into_the_patches_shown(tmp_path):
    photo = np.zeros((224, 224, 3), dtype=np.uint8)
    photo[:16, :16] = (255, 0, 0)          # patch 1: red
    photo[-16:, -16:] = (0, 0, 255)        # patch 196: blue
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    figure = figure1.plot_vit_overview(image=path)
    images = [np.asarray(artist.get_array()) for artist in figure.axes[0].get_images()]
    assert images[0].shape == (224, 224, 3)
    np.testing.assert_allclose(images[0], photo / 255.0, atol=1e-6)
    tiles = images[1:]
    assert len(tiles) == 6 and all(tile.shape == (16, 16, 3) for tile in tiles)
    np.testing.assert_allclose(tiles[0], np.broadcast_to([1.0, 0.0, 0.0], (16, 16, 3)))
    np.testing.assert_allclose(tiles[-1], np.broadcast_to([0.0, 0.0, 1.0], (16, 16, 3)))


def test_save_writes_a_png_into_the_images_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "get_images_dir", lambda: tmp_path)
    path = figure1.save_vit_overview()
    assert path == tmp_path / figure1.FIGURE_FILE_NAME
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.size == (1210, 968)  # 11 x 8.8 inches at 110 dpi
