"""The paper's Figure 7 (section 4.5, notebook 07) from a ``model_builder.ViT`` (``pretrained.vit_from_torchvision``
converts torchvision's): principal components of the filters E, position embedding similarity, attention distance."""
from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from going_modular.figures.plotting import rescale_to_unit_range
from going_modular.model_builder import ViT

PAPER_NUM_COMPONENTS = 28  # Figure 7, left: 4 rows of 7


def _check_vit(model: ViT) -> None:
    if not isinstance(model, ViT):
        raise TypeError(f"Expected the course's model_builder.ViT, got {type(model).__name__}. Convert a torchvision "
                        "VisionTransformer first with going_modular.pretrained.vit_from_torchvision(model).")


def _check_similarity(similarity: torch.Tensor) -> tuple[int, int]:
    if similarity.ndim != 4 or tuple(similarity.shape[:2]) != tuple(similarity.shape[2:]):
        raise ValueError(f"Expected similarities [rows, cols, rows, cols], got shape {tuple(similarity.shape)}.")
    return tuple(similarity.shape[:2])


@torch.no_grad()
def patch_embedding_principal_components(model: ViT, num_components: int = PAPER_NUM_COMPONENTS) -> torch.Tensor:
    """The first k principal components of the D patch-embedding filters [C, P, P] (Figure 7 left): [k, C, P, P],
    the right singular vectors of the centred, flattened filters, largest variance first, each signed so that its
    entry of largest magnitude is positive (SVD signs are arbitrary).

    Raises:
        TypeError: ``model`` is not a ``model_builder.ViT``.
        ValueError: ``num_components`` is below 1 or above min(D, C * P * P).
    """
    _check_vit(model)
    filters = model.patch_embedding.patcher.weight.detach().float().cpu()  # [D, C, P, P]
    flat = filters.flatten(start_dim=1)                                     # [D, C * P * P]
    limit = min(flat.shape)
    if not 1 <= num_components <= limit:
        raise ValueError(f"num_components must be between 1 and min(D, C * P * P) = min{tuple(flat.shape)} = "
                         f"{limit}, got {num_components}.")
    _, _, right_vectors = torch.linalg.svd(flat - flat.mean(dim=0, keepdim=True), full_matrices=False)
    components = right_vectors[:num_components]                             # rows: principal directions
    components = components * components.gather(1, components.abs().argmax(dim=1, keepdim=True)).sign()
    return components.reshape(num_components, *filters.shape[1:])


@torch.no_grad()
def position_embedding_similarity(model: ViT) -> torch.Tensor:
    """Cosine similarity of the position embeddings E_pos of every two patches (Figure 7 centre): [rows, cols, rows,
    cols] on the CPU, the class token left out. TypeError unless ``model`` is a ``model_builder.ViT``."""
    _check_vit(model)
    rows, cols = model.grid_size
    unit = F.normalize(model.position_embedding.detach().float().cpu()[0, 1:], dim=-1)  # [N, D]
    return (unit @ unit.T).reshape(rows, cols, rows, cols)


def _mosaic(tiles: np.ndarray, ncols: int, gap: int, fill: float) -> np.ndarray:
    """Tiles [k, h, w, ...] laid out ``ncols`` a row in one array, ``gap`` pixels of ``fill`` between them."""
    count, height, width = tiles.shape[:3]
    nrows = -(-count // ncols)
    mosaic = np.full((nrows * (height + gap) - gap, ncols * (width + gap) - gap, *tiles.shape[3:]), fill)
    for index, tile in enumerate(tiles):
        top, left = (step * (size + gap) for step, size in zip(divmod(index, ncols), (height, width)))
        mosaic[top : top + height, left : left + width] = tile
    return mosaic


def plot_embedding_filters(components: torch.Tensor, ncols: int = 7, ax: Optional[plt.Axes] = None,
                           title: Optional[str] = "RGB embedding filters\n(first principal components)") -> plt.Figure:
    """Draw components [k, 1 or 3, P, P] as tiles, ``ncols`` a row (Figure 7 left), each stretched from its minimum
    (black) to its maximum (white) as the paper does; returns the Figure. ValueError otherwise, or for ``ncols`` < 1."""
    if components.ndim != 4 or components.shape[1] not in (1, 3):
        raise ValueError(f"Expected components [k, 1 or 3 channels, P, P], got shape {tuple(components.shape)}.")
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}.")
    count, _, height, width = components.shape
    ncols = min(ncols, count)
    tiles = np.stack([rescale_to_unit_range(component).permute(1, 2, 0).expand(height, width, 3).numpy()
                      for component in components.detach().float().cpu()])
    ax = ax if ax is not None else plt.subplots(figsize=(1.0 * ncols, 1.0 * -(-count // ncols) + 0.6))[1]
    ax.imshow(_mosaic(tiles, ncols, gap=max(1, height // 8), fill=1.0), interpolation="nearest")  # white gaps
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax.figure


def plot_position_similarity(similarity: torch.Tensor, ax: Optional[plt.Axes] = None,
                             title: Optional[str] = "Position embedding similarity",
                             cmap: str = "viridis") -> plt.Figure:
    """Draw similarities [rows, cols, rows, cols] as one mosaic of small maps (Figure 7 centre), the one at (r, c)
    comparing patch (r, c) with every patch, -1 to 1; returns the Figure. ValueError for any other shape."""
    rows, cols = _check_similarity(similarity)
    values = similarity.detach().float().cpu().numpy().reshape(rows * cols, rows, cols)
    mosaic = _mosaic(values, cols, gap=1, fill=np.nan)  # NaN gaps are drawn blank
    ax = ax if ax is not None else plt.subplots(figsize=(5.2, 4.6))[1]
    image = ax.imshow(mosaic, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([col * (cols + 1) + (cols - 1) / 2 for col in range(cols)], [str(c + 1) for c in range(cols)])
    ax.set_yticks([row * (rows + 1) + (rows - 1) / 2 for row in range(rows)], [str(r + 1) for r in range(rows)])
    ax.tick_params(length=0, labelsize=7)
    ax.set(xlabel="Input patch column", ylabel="Input patch row")
    ax.spines[:].set_visible(False)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="Cosine similarity")
    if title:
        ax.set_title(title)
    return ax.figure


def plot_similarity_of_patches(similarity: torch.Tensor, patches: Sequence[tuple[int, int]],
                               axes: Optional[Sequence[plt.Axes]] = None, label: str = "",
                               cmap: str = "viridis") -> plt.Figure:
    """Draw the maps of a few patches (row, col) from similarities [rows, cols, rows, cols], one enlarged panel each,
    the patch marked in red, -1 to 1. ValueError for any other shape, or a patch outside the grid."""
    rows, cols = _check_similarity(similarity)
    if outside := [patch for patch in patches if not (0 <= patch[0] < rows and 0 <= patch[1] < cols)]:
        raise ValueError(f"Patches {outside} lie outside the {rows} x {cols} grid (rows and columns count from 0).")
    if axes is None:
        axes = plt.subplots(1, len(patches), figsize=(3.2 * len(patches), 3.2), squeeze=False)[1][0]
    for ax, (row, col) in zip(axes, patches):
        ax.imshow(similarity[row, col].detach().float().cpu().numpy(), cmap=cmap, vmin=-1, vmax=1)
        ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        ax.set_title(f"{label}patch (row {row + 1}, column {col + 1})", fontsize=10)
        ax.set(xticks=[], yticks=[])
    return axes[0].figure


def plot_mean_attention_distance(distances_per_layer: torch.Tensor, ax: Optional[plt.Axes] = None,
                                 title: Optional[str] = "Mean attention distance per head",
                                 reference_distance: Optional[float] = None,
                                 y_max: Optional[float] = None) -> plt.Figure:
    """Scatter each head's mean attention distance [layers, heads] in pixels against its layer (Figure 7 right), a
    dashed line at ``reference_distance`` (e.g. uniform attention's), the y axis up to ``y_max`` (None: 10 % above the
    highest); returns the Figure. ValueError when the shape is wrong or ``y_max`` would cut off a point or the line."""
    if distances_per_layer.ndim != 2:
        raise ValueError(f"Expected distances [layers, heads], got shape {tuple(distances_per_layer.shape)}.")
    values = distances_per_layer.detach().float().cpu().numpy()
    layers, heads = values.shape
    highest = max(float(values.max()), reference_distance or 0.0)
    if y_max is None:
        y_max = 1.1 * highest if highest > 0 else 1.0
    elif y_max <= highest:
        raise ValueError(f"y_max = {y_max} would cut off a point or the reference line at {highest:.1f} pixels.")
    ax = ax if ax is not None else plt.subplots(figsize=(5.0, 4.0))[1]
    colours = plt.get_cmap("tab20" if heads > 10 else "tab10")
    for head in range(heads):
        ax.scatter(np.arange(1, layers + 1), values[:, head], s=18, color=colours(head % colours.N),
                   label=f"head {head + 1}", zorder=3)
    if reference_distance is not None:
        ax.axhline(reference_distance, color="grey", linestyle="--", linewidth=1, label="uniform attention")
    ax.set(xlabel="Network depth (layer)", ylabel="Mean attention distance (pixels)", xticks=np.arange(1, layers + 1),
           xlim=(0.5, layers + 0.5), ylim=(0, y_max))
    if heads <= 16:
        ax.legend(fontsize="small", ncol=2 if heads > 4 else 1, loc="best", framealpha=0.9)
    if title:
        ax.set_title(title)
    return ax.figure


def plot_figure7(components: torch.Tensor, similarity: torch.Tensor, distances_per_layer: torch.Tensor,
                 axes: Optional[Sequence[plt.Axes]] = None, label: Optional[str] = None,
                 reference_distance: Optional[float] = None, y_max: Optional[float] = None) -> plt.Figure:
    """Draw the three panels of Figure 7 on a row of three ``axes`` (default: a new figure), ``label`` (the model)
    added to each title; returns the Figure. ValueError when ``axes`` is not three Axes or an input is mis-shaped."""
    if axes is None:
        axes = plt.subplots(1, 3, figsize=(17, 5.2), gridspec_kw={"width_ratios": [1.25, 1.1, 1.0]})[1]
    axes = list(np.ravel(axes))
    if len(axes) != 3:
        raise ValueError(f"plot_figure7 draws three panels and needs three Axes, got {len(axes)}.")
    suffix = f"\n{label}" if label else ""
    plot_embedding_filters(components, ax=axes[0],
                           title=f"Embedding filters (first {components.shape[0]} principal components){suffix}")
    plot_position_similarity(similarity, ax=axes[1], title=f"Position embedding similarity{suffix}")
    plot_mean_attention_distance(distances_per_layer, ax=axes[2], reference_distance=reference_distance,
                                 y_max=y_max, title=f"Mean attention distance per head{suffix}")
    return axes[0].figure
