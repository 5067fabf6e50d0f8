"""The three panels of the paper's Figure 7: what a trained ViT's embeddings and attention look like.

Section 4.5 of the paper ("Inspecting Vision Transformer") looks inside a trained ViT-L/32:

    left    "the top principal components of the learned embedding filters": the patch embedding
            E of equation 1 (``patch_embedding.patcher``), one [C, P, P] filter per output feature;
            its first 28 principal components shown as RGB tiles        -> patch_embedding_principal_components
                                                                         -> plot_embedding_filters
    centre  "similarity of position embeddings": the cosine similarity of each patch's position
            embedding with every other one, drawn on the patch grid     -> position_embedding_similarity
                                                                         -> plot_position_similarity
    right   "size of attended area by head and network depth": each head's mean attention distance
            (``attention.mean_attention_distance``) against the layer   -> plot_mean_attention_distance

    all three   one row of three Axes, as the paper lays them out     -> plot_figure7

Every function reads the course's ``model_builder.ViT`` (a torchvision ViT converts with
``pretrained.vit_from_torchvision``). Notebook 07 draws the three panels for the ImageNet-trained
ViT-Ti/16 of ``pretrained.load_pretrained_vit`` and, beside them, for a randomly initialised one.
"""
from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from going_modular.model_builder import ViT
from going_modular.figures.plotting import rescale_to_unit_range

# The paper shows 28 components (4 rows of 7) in Figure 7, left.
PAPER_NUM_COMPONENTS = 28


def _check_vit(model: ViT) -> None:
    if not isinstance(model, ViT):
        raise TypeError(
            f"Expected the course's model_builder.ViT, got {type(model).__name__}. Convert a torchvision "
            "VisionTransformer first with going_modular.pretrained.vit_from_torchvision(model)."
        )


@torch.no_grad()
def patch_embedding_principal_components(model: ViT, num_components: int = PAPER_NUM_COMPONENTS) -> torch.Tensor:
    """The top principal components of the patch-embedding filters E (Figure 7 left; notebook 07).

    The patch embedding is a Conv2d whose weight [D, C, P, P] holds D filters, one per embedding
    feature. Flattened, they are D points in C * P * P dimensions; after subtracting their mean, the
    right singular vectors of ``torch.linalg.svd`` are the principal directions, largest variance
    first. Each direction is laid back out as a [C, P, P] filter: "plausible basis functions for a
    low-dimensional representation of the fine structure within each patch", in the paper's words.

    A singular vector's sign is arbitrary; each component is flipped so that its entry of largest
    absolute value is positive, so the result does not depend on the SVD routine.

    Args:
        model: the course's ViT.
        num_components: k, how many components (28 in the paper). At most min(D, C * P * P).

    Returns:
        A float tensor [k, C, P, P] on the CPU; flattened, the components are orthonormal.

    Raises:
        TypeError: ``model`` is not a ``model_builder.ViT``.
        ValueError: ``num_components`` is below 1 or above min(D, C * P * P).
    """
    _check_vit(model)
    filters = model.patch_embedding.patcher.weight.detach().float().cpu()  # [D, C, P, P]
    flat = filters.flatten(start_dim=1)                                     # [D, C * P * P]
    limit = min(flat.shape)
    if not 1 <= num_components <= limit:
        raise ValueError(
            f"num_components must be between 1 and min(D, C * P * P) = min{tuple(flat.shape)} = {limit}, "
            f"got {num_components}."
        )
    centred = flat - flat.mean(dim=0, keepdim=True)
    _, _, right_vectors = torch.linalg.svd(centred, full_matrices=False)   # rows: principal directions
    components = right_vectors[:num_components]
    largest = components.abs().argmax(dim=1, keepdim=True)
    components = components * torch.sign(components.gather(1, largest))
    return components.reshape(num_components, *filters.shape[1:])


@torch.no_grad()
def position_embedding_similarity(model: ViT) -> torch.Tensor:
    """Cosine similarity of each patch's position embedding with every other one (Figure 7 centre; notebook 07).

    The position embedding E_pos of equation 1 has one learned vector per token; the class token's
    (token 0) is left out, since it has no place on the grid. Entry [r1, c1, r2, c2] is the cosine
    similarity between the embeddings of the patch at row r1, column c1 and the patch at row r2,
    column c2 (patches in row-major order, as in equation 1). The paper: "closer patches tend to have
    more similar position embeddings ... patches in the same row/column have similar embeddings".

    Args:
        model: the course's ViT.

    Returns:
        A float tensor [rows, cols, rows, cols] on the CPU, with rows = H / P and cols = W / P; values in
        [-1, 1], 1 on the diagonal (r1, c1) == (r2, c2).

    Raises:
        TypeError: ``model`` is not a ``model_builder.ViT``.
    """
    _check_vit(model)
    rows, cols = (size // model.patch_size for size in model.img_size)
    patches = model.position_embedding.detach().float().cpu()[0, 1:]       # [N, D], class token left out
    unit = F.normalize(patches, dim=-1)
    return (unit @ unit.T).reshape(rows, cols, rows, cols)


def _new_axes(ax: Optional[plt.Axes], figsize: tuple[float, float]) -> plt.Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_embedding_filters(
    components: torch.Tensor,
    ncols: int = 7,
    ax: Optional[plt.Axes] = None,
    title: Optional[str] = "RGB embedding filters\n(first principal components)",
) -> plt.Figure:
    """Draw principal components [k, C, P, P] as a grid of tiles, first component top left (Figure 7 left).

    Each tile is stretched on its own from its minimum (black) to its maximum (white), as the paper
    does, so the tiles show the pattern of each component, not its scale. Three channels are drawn as
    RGB; one channel in grey.

    Args:
        components: the output of ``patch_embedding_principal_components``.
        ncols: tiles per row (7 gives the paper's 4 x 7 layout for 28 components).
        ax: the Axes to draw on (default: a new figure).
        title: the Axes title.

    Returns:
        The Figure drawn on.

    Raises:
        ValueError: ``components`` is not [k, 1 or 3, P, P], or ``ncols`` is below 1.
    """
    if components.ndim != 4 or components.shape[1] not in (1, 3):
        raise ValueError(f"Expected components [k, 1 or 3 channels, P, P], got shape {tuple(components.shape)}.")
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}.")
    count, channels, height, width = components.shape
    ncols = min(ncols, count)
    nrows = -(-count // ncols)
    gap = max(1, height // 8)
    mosaic = np.ones((nrows * (height + gap) - gap, ncols * (width + gap) - gap, 3))  # white between tiles
    for index, component in enumerate(components.detach().float().cpu()):
        tile = rescale_to_unit_range(component).permute(1, 2, 0).expand(height, width, 3).numpy()
        row, col = divmod(index, ncols)
        top, left = row * (height + gap), col * (width + gap)
        mosaic[top : top + height, left : left + width] = tile
    ax = _new_axes(ax, (1.0 * ncols, 1.0 * nrows + 0.6))
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax.figure


def plot_position_similarity(
    similarity: torch.Tensor,
    ax: Optional[plt.Axes] = None,
    title: Optional[str] = "Position embedding similarity",
    cmap: str = "viridis",
) -> plt.Figure:
    """Draw [rows, cols, rows, cols] similarities as a grid of small maps, as in Figure 7 centre.

    The small map at row r, column c of the grid shows the similarity of patch (r, c)'s position
    embedding with every patch; all maps share one colour scale from -1 to 1 and are drawn as one
    image (a mosaic with gaps), which is much faster than rows * cols separate Axes.

    Args:
        similarity: the output of ``position_embedding_similarity``.
        ax: the Axes to draw on (default: a new figure).
        title: the Axes title.
        cmap: a matplotlib colour map.

    Returns:
        The Figure drawn on (with a colour bar).

    Raises:
        ValueError: ``similarity`` is not [rows, cols, rows, cols].
    """
    if similarity.ndim != 4 or tuple(similarity.shape[:2]) != tuple(similarity.shape[2:]):
        raise ValueError(f"Expected similarities [rows, cols, rows, cols], got shape {tuple(similarity.shape)}.")
    rows, cols = similarity.shape[:2]
    values = similarity.detach().float().cpu().numpy()
    mosaic = np.full((rows * (rows + 1) - 1, cols * (cols + 1) - 1), np.nan)  # NaN gaps are drawn blank
    for row in range(rows):
        for col in range(cols):
            top, left = row * (rows + 1), col * (cols + 1)
            mosaic[top : top + rows, left : left + cols] = values[row, col]
    ax = _new_axes(ax, (5.2, 4.6))
    image = ax.imshow(mosaic, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([col * (cols + 1) + (cols - 1) / 2 for col in range(cols)], [str(c + 1) for c in range(cols)])
    ax.set_yticks([row * (rows + 1) + (rows - 1) / 2 for row in range(rows)], [str(r + 1) for r in range(rows)])
    ax.tick_params(length=0, labelsize=7)
    ax.set_xlabel("Input patch column")
    ax.set_ylabel("Input patch row")
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="Cosine similarity")
    if title:
        ax.set_title(title)
    return ax.figure


def plot_mean_attention_distance(
    distances_per_layer: torch.Tensor,
    ax: Optional[plt.Axes] = None,
    title: Optional[str] = "Mean attention distance per head",
    reference_distance: Optional[float] = None,
    y_max: Optional[float] = None,
) -> plt.Figure:
    """Scatter each head's mean attention distance against its layer, as in Figure 7 right.

    Heads are numbered from 1 in the legend. The axes are fixed so that no point is cut off: layers
    1..L sit half a step inside the x limits, and the y axis runs from 0 to ``y_max``.

    Args:
        distances_per_layer: [layers, heads] in pixels, e.g. ``torch.stack`` of
            ``attention.mean_attention_distance`` for every layer.
        ax: the Axes to draw on (default: a new figure).
        title: the Axes title.
        reference_distance: when given, a dashed line at this distance (for example the distance of
            perfectly uniform attention: heads below it prefer nearby patches, heads above it far ones).
        y_max: the top of the y axis in pixels; pass the same value to panels that are compared side by
            side. Default: 10 % above the highest point (or the reference line, when that is higher).

    Returns:
        The Figure drawn on.

    Raises:
        ValueError: ``distances_per_layer`` is not [layers, heads], or ``y_max`` is below a point or
            the reference line (the message names both).
    """
    if distances_per_layer.ndim != 2:
        raise ValueError(f"Expected distances [layers, heads], got shape {tuple(distances_per_layer.shape)}.")
    values = distances_per_layer.detach().float().cpu().numpy()
    layers, heads = values.shape
    highest = max(float(values.max()), reference_distance or 0.0)
    if y_max is None:
        y_max = 1.1 * highest if highest > 0 else 1.0
    elif y_max <= highest:
        raise ValueError(f"y_max = {y_max} would cut off a point or the reference line at {highest:.1f} pixels.")
    ax = _new_axes(ax, (5.0, 4.0))
    colours = plt.get_cmap("tab20" if heads > 10 else "tab10")
    for head in range(heads):
        ax.scatter(np.arange(1, layers + 1), values[:, head], s=18, color=colours(head % colours.N),
                   label=f"head {head + 1}", zorder=3)
    if reference_distance is not None:
        ax.axhline(reference_distance, color="grey", linestyle="--", linewidth=1, label="uniform attention")
    ax.set_xlabel("Network depth (layer)")
    ax.set_ylabel("Mean attention distance (pixels)")
    ax.set_xticks(np.arange(1, layers + 1))
    ax.set_xlim(0.5, layers + 0.5)
    ax.set_ylim(0, y_max)
    if heads <= 16:
        ax.legend(fontsize="small", ncol=2 if heads > 4 else 1, loc="best", framealpha=0.9)
    if title:
        ax.set_title(title)
    return ax.figure


def plot_figure7(
    components: torch.Tensor,
    similarity: torch.Tensor,
    distances_per_layer: torch.Tensor,
    axes: Optional[Sequence[plt.Axes]] = None,
    label: Optional[str] = None,
    reference_distance: Optional[float] = None,
    y_max: Optional[float] = None,
) -> plt.Figure:
    """Draw the three panels of Figure 7 on a row of three Axes: filters, position similarity, attention distance.

    Notebook 07 draws one row for the pretrained ViT-Ti/16 and one for a randomly initialised one.

    Args:
        components: the output of ``patch_embedding_principal_components``.
        similarity: the output of ``position_embedding_similarity``.
        distances_per_layer: [layers, heads] mean attention distances in pixels.
        axes: three Axes to draw on, left to right (default: a new figure of one row).
        label: which model the panels show (e.g. "ViT-Ti/16, randomly initialised"), added to each title.
        reference_distance: passed to ``plot_mean_attention_distance`` (e.g. uniform attention).
        y_max: passed to ``plot_mean_attention_distance``; give two rows the same value to compare them.

    Returns:
        The Figure drawn on.

    Raises:
        ValueError: ``axes`` is not three Axes, or a panel's input has the wrong shape (see each plot function).
    """
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(17, 5.2), gridspec_kw={"width_ratios": [1.25, 1.1, 1.0]})
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
