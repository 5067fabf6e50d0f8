"""The paper's Figure 1, the model overview, with the shape of the data on every arrow: ``vit_shapes`` traces the
preset's ``model_builder.ViT`` on the ``meta`` device, so the picture always says what the package's model does."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle
from PIL import Image

from going_modular import model_builder
from going_modular.common import settings
from going_modular.data_setup import load_image
from going_modular.figures.plotting import ImageLike, image_to_hwc
from going_modular.utils import PathLike

FIGURE_FILE_NAME = "figure1_vit_overview.png"
# Laid out in inches (one data unit = one inch): font sizes stay readable in the README, about 9 inches wide.
_WIDTH, _HEIGHT = 11.0, 8.8
_FLOW_X = 5.15  # the centre line of the main flow
_SHAPE_FONT = dict(family="monospace", fontsize=10.5)
_COLOURS = dict(projection="#f4a6a8", position="#c7b3e6", class_token="#9d7fd1", encoder="#fbe8a6", norm="#fbe8a6",
                attention="#b8e0d2", mlp="#9fd0ea", head="#f9c78f", panel="#f6f6f6", edge="#444444")


@dataclass(frozen=True)
class VitShapes:
    """The sizes of a ViT preset and the shapes of its tensors for one image, as the package computes them."""
    name: str                                  # e.g. "ViT-B/16"
    in_channels: int                           # C
    patch_size: int                            # P
    patch_numbers: int                         # P * P * C, the numbers in one flattened patch
    grid_size: tuple[int, int]                 # (rows, columns) of patches
    num_patches: int                           # N
    num_layers: int                            # L
    num_heads: int
    mlp_size: int
    embedding_dim: int                         # D
    image: tuple[int, ...]                     # [1, C, H, W]
    patch_embeddings: tuple[int, ...]          # x_p E: [1, N, D]
    tokens: tuple[int, ...]                    # z_0, after the class token and E_pos: [1, N + 1, D]
    encoder_output: tuple[int, ...]            # z_L: [1, N + 1, D]
    class_token_output: tuple[int, ...]        # y = LN(z_L^0): [1, D]
    logits: tuple[int, ...]                    # [1, num_classes]


def vit_shapes(preset: str = "vit_b_16", num_classes: int = 1000) -> VitShapes:
    """Trace one image through ``model_builder.create_vit(preset)`` on the meta device; record every shape.
    ValueError when ``preset`` is not in ``model_builder.VIT_PRESETS``."""
    seen: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"), torch.no_grad():  # shapes only: nothing is allocated or computed
        model = model_builder.create_vit(preset, num_classes=num_classes)
        image = torch.empty(1, model.patch_embedding.in_channels, *model.img_size)
        model.transformer_encoder[0].register_forward_pre_hook(lambda _m, args: seen.update(z_0=tuple(args[0].shape)))
        model.transformer_encoder[-1].register_forward_hook(lambda _m, _i, out: seen.update(z_L=tuple(out.shape)))
        patches = model.patch_embedding(model.stem(image))
        y = model.forward_head(model.forward_features(image), pre_logits=True)
        logits = model.head(y)
    config = model_builder.VIT_PRESETS[preset]
    _, size, patch = preset.split("_")  # "vit_b_16" -> "ViT-B/16", "vit_ti_16" -> "ViT-Ti/16"
    channels, patch_size = image.shape[1], config["patch_size"]
    return VitShapes(name=f"ViT-{size.capitalize()}/{patch}", in_channels=channels, patch_size=patch_size,
                     patch_numbers=patch_size * patch_size * channels, grid_size=model.grid_size,
                     num_patches=model.num_patches, num_layers=config["num_transformer_layers"],
                     num_heads=config["num_heads"], mlp_size=config["mlp_size"], embedding_dim=config["embedding_dim"],
                     image=tuple(image.shape), patch_embeddings=tuple(patches.shape), tokens=seen["z_0"],
                     encoder_output=seen["z_L"], class_token_output=tuple(y.shape), logits=tuple(logits.shape))


def _image_pixels(image: Union[PathLike, ImageLike, None], height: int, width: int) -> np.ndarray:
    """``image`` (a file, PIL image, tensor or array; None for a placeholder) as floats [H, W, 3] in [0, 1]."""
    if image is None:  # a smooth colour gradient, so that every patch looks different without a photo
        rows, cols = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
        return np.stack([0.35 + 0.6 * cols, 0.45 + 0.45 * rows, 0.95 - 0.5 * (rows + cols) / 2], axis=-1)
    if isinstance(image, (str, Path)):
        image = load_image(image)
    if not isinstance(image, Image.Image):
        image = Image.fromarray((image_to_hwc(image)[..., :3] * 255).round().astype(np.uint8))
    return np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR), dtype=np.float32) / 255.0


def _box(ax: plt.Axes, centre: tuple[float, float], size: tuple[float, float], text: str, colour: str,
         fontsize: float = 11) -> None:
    (x, y), (width, height) = centre, size
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, facecolor=colour, linewidth=1.0,
                                edgecolor=_COLOURS["edge"], boxstyle="round,pad=0,rounding_size=0.08"))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, linespacing=1.35)


def _arrow(ax: plt.Axes, start: tuple[float, float], end: tuple[float, float], label: str = "",
           label_at: Optional[tuple[float, float]] = None, ha: str = "left") -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, linewidth=1.3,
                                 color=_COLOURS["edge"], shrinkA=0, shrinkB=0))
    if label:
        x, y = label_at or ((start[0] + end[0]) / 2 + 0.12, (start[1] + end[1]) / 2)
        ax.text(x, y, label, ha=ha, va="center", color="#1f3f7a", **_SHAPE_FONT)


def _plus(ax: plt.Axes, centre: tuple[float, float], equation: str, radius: float = 0.15) -> None:
    ax.add_patch(Circle(centre, radius, facecolor="white", edgecolor=_COLOURS["edge"], linewidth=1.2))
    ax.text(*centre, "+", ha="center", va="center", fontsize=13)
    ax.text(centre[0] + 0.3, centre[1], equation, ha="left", va="center", fontsize=10)


def _draw_image_and_patches(ax: plt.Axes, pixels: np.ndarray, shapes: VitShapes) -> None:
    """Top row: the image with its patch grid, an arrow, and the first patches of the sequence."""
    left, bottom, side = 0.35, 6.35, 1.45
    ax.imshow(pixels, extent=(left, left + side, bottom, bottom + side), interpolation="bilinear", zorder=1)
    per_side = shapes.grid_size[0]  # the presets' images are square
    for k in range(per_side + 1):  # the patch grid, in white
        offset = side * k / per_side
        ax.plot([left + offset] * 2, [bottom, bottom + side], color="white", linewidth=0.6, zorder=2)
        ax.plot([left, left + side], [bottom + offset] * 2, color="white", linewidth=0.6, zorder=2)
    ax.text(left + side / 2, bottom - 0.2, f"image, {shapes.image[2]} × {shapes.image[3]}", ha="center",
            va="center", fontsize=10)
    _arrow(ax, (left + side + 0.15, bottom + side / 2), (3.45, bottom + side / 2), str(list(shapes.image)),
           label_at=(left + side + 0.15 + (3.45 - left - side - 0.15) / 2, bottom + side / 2 + 0.22), ha="center")
    tile, gap, shown, x, patch = 0.46, 0.13, 5, 3.6, shapes.patch_size
    for position, index in enumerate([*range(shown), shapes.num_patches - 1]):  # the sequence's first and last
        if position == shown:  # the patches left out
            ax.text(x + 0.12, 7.08, "…", ha="center", va="center", fontsize=14)
            x += 0.37
        row, col = divmod(index, shapes.grid_size[1])
        ax.imshow(pixels[row * patch:(row + 1) * patch, col * patch:(col + 1) * patch],
                  extent=(x, x + tile, 6.85, 6.85 + tile), interpolation="nearest", zorder=1)
        ax.add_patch(Rectangle((x, 6.85), tile, tile, fill=False, edgecolor=_COLOURS["edge"], linewidth=0.8))
        ax.text(x + tile / 2, 6.67, str(index + 1), ha="center", va="center", fontsize=9.5)
        x += tile + gap
    ax.text(_FLOW_X + 0.1, 7.62, f"{shapes.num_patches} patches of {shapes.patch_size} × {shapes.patch_size} × "
            f"{shapes.in_channels} = {shapes.patch_numbers} numbers", ha="center", va="center", fontsize=10.5)


def _draw_main_flow(ax: plt.Axes, shapes: VitShapes) -> tuple[float, float]:
    """Projection, the tokens z_0, encoder, LayerNorm, head; returns the encoder box's (top, bottom)."""
    x = _FLOW_X
    flattened = [shapes.image[0], shapes.num_patches, shapes.patch_numbers]  # [1, N, P^2 C], the x_p
    _arrow(ax, (x, 6.5), (x, 6.02), rf"{flattened}  $\mathbf{{x}}_p$", label_at=(x + 0.12, 6.26))
    _box(ax, (x, 5.7), (3.9, 0.62), "Linear projection of flattened patches\n"
         rf"$\mathbf{{x}}_p\mathbf{{E}}$, E: {shapes.patch_numbers} × {shapes.embedding_dim}", _COLOURS["projection"])
    _arrow(ax, (x, 5.39), (x, 4.93), str(list(shapes.patch_embeddings)))
    # The sequence z_0: position embeddings (ovals) beside the class token 0* and the patch embeddings.
    y, labels, step = 4.65, ["0*", "1", "2", "3", str(shapes.num_patches)], 0.64
    left = x - (len(labels) * step + 0.3) / 2
    for position, label in enumerate(labels):
        if position == len(labels) - 1:
            ax.text(left + 0.1, y, "…", ha="center", va="center", fontsize=14)
            left += 0.3
        ax.add_patch(FancyBboxPatch((left, y - 0.14), 0.36, 0.28, boxstyle="round,pad=0,rounding_size=0.12",
                                    facecolor=_COLOURS["position"], edgecolor=_COLOURS["edge"], linewidth=0.8))
        ax.text(left + 0.18, y, label.rstrip("*"), ha="center", va="center", fontsize=8.5)
        colour = _COLOURS["class_token"] if label == "0*" else _COLOURS["projection"]
        ax.add_patch(Rectangle((left + 0.38, y - 0.2), 0.18, 0.4, facecolor=colour, edgecolor=_COLOURS["edge"],
                               linewidth=0.8))
        if label == "0*":
            ax.text(left + 0.47, y, "*", ha="center", va="center", fontsize=11, color="white", fontweight="bold")
        left += step
    for line, note in enumerate((r"$*$ class token $\mathbf{x}_\mathrm{class}$, put first:",
                                 f"   {shapes.num_patches} + 1 = {shapes.tokens[1]} tokens",
                                 r"ovals: position embeddings $\mathbf{E}_\mathrm{pos}$")):
        ax.text(0.35, y + 0.27 * (1 - line), note, ha="left", va="center", fontsize=10)
    _arrow(ax, (x, 4.38), (x, 3.9), rf"{list(shapes.tokens)}  $\mathbf{{z}}_0$")
    encoder_top, encoder_bottom = 3.9, 3.15
    _box(ax, (x, (encoder_top + encoder_bottom) / 2), (3.9, encoder_top - encoder_bottom),
         f"Transformer encoder\nL = {shapes.num_layers} blocks", _COLOURS["encoder"], fontsize=11.5)
    _arrow(ax, (x, encoder_bottom), (x, 2.67), rf"{list(shapes.encoder_output)}  $\mathbf{{z}}_L$")
    _box(ax, (x, 2.38), (3.9, 0.58), r"LayerNorm of the class token's state $\mathbf{z}_L^0$", _COLOURS["norm"])
    _arrow(ax, (x, 2.09), (x, 1.61), rf"{list(shapes.class_token_output)}  $\mathbf{{y}}$")
    _box(ax, (x, 1.35), (2.4, 0.52), "MLP head", _COLOURS["head"])
    _arrow(ax, (x, 1.09), (x, 0.62), str(list(shapes.logits)))
    classes = "the 1000 ImageNet classes" if shapes.logits[-1] == 1000 else f"the {shapes.logits[-1]} classes"
    ax.text(x, 0.42, f"class: one score for each of {classes}", ha="center", va="center", fontsize=10.5)
    for y_text, equations in ((5.7, "equation 1"), ((encoder_top + encoder_bottom) / 2, "equations 2, 3"),
                              (2.38, "equation 4")):
        ax.text(0.35, y_text, equations, ha="left", va="center", fontsize=10, style="italic", color="#555555")
    return encoder_top, encoder_bottom


def _draw_encoder_block(ax: plt.Axes, shapes: VitShapes, left: float, right: float, top: float, bottom: float) -> None:
    """The right panel: one encoder block, LN -> MSA -> + -> LN -> MLP -> +, with both residual paths."""
    ax.add_patch(FancyBboxPatch((left, bottom), right - left, top - bottom, boxstyle="round,pad=0,rounding_size=0.12",
                                facecolor=_COLOURS["panel"], edgecolor="#888888", linewidth=1.0, linestyle="--"))
    x = (left + right) / 2 + 0.05
    ax.text((left + right) / 2, top - 0.4, f"Transformer encoder block\n(one of L = {shapes.num_layers})",
            ha="center", va="center", fontsize=11.5, fontweight="bold", linespacing=1.3)
    tokens = str(list(shapes.tokens))
    ax.text(x, top - 1.0, rf"$\mathbf{{z}}_{{\ell-1}}$  {tokens}", ha="center", va="center", **_SHAPE_FONT)
    fork_1, plus_1, fork_2, plus_2 = top - 1.3, top - 3.7, top - 4.0, top - 6.75
    _arrow(ax, (x, top - 1.15), (x, top - 1.6))
    _box(ax, (x, top - 1.85), (2.2, 0.5), "LayerNorm", _COLOURS["norm"])
    _arrow(ax, (x, top - 2.1), (x, top - 2.45))
    _box(ax, (x, top - 2.82), (2.2, 0.74), f"Multi-head\nself-attention ({shapes.num_heads} heads)",
         _COLOURS["attention"])
    _arrow(ax, (x, top - 3.19), (x, plus_1 + 0.15))
    _plus(ax, (x, plus_1), "(2)")
    _arrow(ax, (x, plus_1 - 0.15), (x, top - 4.62), tokens, label_at=(x + 0.12, top - 4.32))
    _box(ax, (x, top - 4.87), (2.2, 0.5), "LayerNorm", _COLOURS["norm"])
    _arrow(ax, (x, top - 5.12), (x, top - 5.45))
    _box(ax, (x, top - 5.85), (2.2, 0.8), f"MLP with GELU\n{shapes.embedding_dim} → {shapes.mlp_size} → "
         f"{shapes.embedding_dim}", _COLOURS["mlp"])
    _arrow(ax, (x, top - 6.25), (x, plus_2 + 0.15))
    _plus(ax, (x, plus_2), "(3)")
    _arrow(ax, (x, plus_2 - 0.15), (x, top - 7.25))
    ax.text(x, top - 7.45, rf"$\mathbf{{z}}_\ell$  {tokens}", ha="center", va="center", **_SHAPE_FONT)
    side = left + 0.28  # the two residual paths run down the panel's left side
    for fork, plus in ((fork_1, plus_1), (fork_2, plus_2)):
        ax.plot([x, side, side], [fork, fork, plus], color=_COLOURS["edge"], linewidth=1.3)
        _arrow(ax, (side, plus), (x - 0.15, plus))


def plot_vit_overview(image: Union[PathLike, ImageLike, None] = None, preset: str = "vit_b_16",
                      num_classes: int = 1000) -> plt.Figure:
    """Draw the paper's Figure 1 for ``preset`` (11 x 8.8 inches), with the tensor's shape on every arrow, cutting
    ``image`` (a path, PIL image, tensor [C, H, W] or array [H, W, C]; None: a colour gradient) into patches.

    Raises:
        ValueError: ``preset`` is unknown, or ``image`` is not a single image.
        FileNotFoundError: ``image`` is a path with no file.
    """
    shapes = vit_shapes(preset, num_classes=num_classes)
    pixels = _image_pixels(image, *shapes.image[2:])
    figure = plt.figure(figsize=(_WIDTH, _HEIGHT))
    ax = figure.add_axes((0, 0, 1, 1), xlim=(0, _WIDTH), ylim=(0, _HEIGHT), aspect="equal")
    ax.axis("off")
    ax.text(0.35, _HEIGHT - 0.3, f"{shapes.name}: the paper's Figure 1, with the shape of the data on every arrow",
            ha="left", va="center", fontsize=13.5, fontweight="bold")
    _draw_image_and_patches(ax, pixels, shapes)
    encoder_top, encoder_bottom = _draw_main_flow(ax, shapes)
    left, right, top, bottom = 7.75, _WIDTH - 0.2, 8.05, 0.2
    _draw_encoder_block(ax, shapes, left, right, top, bottom)
    for encoder_y, block_y in ((encoder_top, top), (encoder_bottom, bottom)):  # the encoder box, enlarged
        ax.plot([_FLOW_X + 1.95, left], [encoder_y, block_y], color="#888888", linewidth=1.0, linestyle="--")
    return figure


def save_vit_overview(path: Optional[PathLike] = None, image: Union[PathLike, ImageLike, None] = None,
                      dpi: int = 110) -> Path:
    """Save ``plot_vit_overview(image)`` as a PNG (default: in the images folder); return the path written."""
    path = Path(path) if path is not None else settings.get_images_dir() / FIGURE_FILE_NAME
    figure = plot_vit_overview(image)
    figure.savefig(path, dpi=dpi, facecolor="white")
    plt.close(figure)
    return path
