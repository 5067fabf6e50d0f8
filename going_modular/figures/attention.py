"""Pictures of what a ViT attends to, from the attention weights it returns (notebooks 02 and 07).

Every function takes weights as ``ViT(..., return_attention=True)`` returns them: one tensor
[batch, heads, N + 1, N + 1] per layer, softmax(q k^T / sqrt(D_h)) of equation 2, token 0 the class
token and tokens 1..N the patches in row-major order on the grid ``model.grid_size`` (equation 1).
"""
from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
import torch.nn.functional as F

from going_modular.figures.plotting import ImageLike, image_to_hwc, rescale_to_unit_range
from going_modular.common.shapes import ImageSize, to_pair

# The token grid (rows, cols), e.g. ``model.grid_size``, or one int for a square grid.
GridSize = ImageSize

# The class token is the first token of the sequence (equation 1: z_0 = [x_class; x_p^1 E; ...]).
CLASS_TOKEN_INDEX = 0


def _check_attention(attention: torch.Tensor, grid_size: GridSize, batch_index: int = 0) -> tuple[int, int]:
    """Check that ``attention`` is [batch, heads, N + 1, N + 1] with N = rows * cols and that ``batch_index`` is in
    the batch (IndexError); return (rows, cols)."""
    rows, cols = to_pair(grid_size, name="grid_size")
    if attention.ndim != 4 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"Expected attention weights [batch, heads, tokens, tokens], got {tuple(attention.shape)}.")
    if attention.shape[-1] != rows * cols + 1:
        raise ValueError(f"A {rows} x {cols} patch grid plus the class token is {rows * cols + 1} tokens, but the "
                         f"attention weights have {attention.shape[-1]} tokens (shape {tuple(attention.shape)}).")
    if not -attention.shape[0] <= batch_index < attention.shape[0]:
        raise IndexError(f"batch_index {batch_index} is outside a batch of {attention.shape[0]}.")
    return rows, cols


def class_token_attention(attention: torch.Tensor, grid_size: GridSize, batch_index: int = 0) -> torch.Tensor:
    """Row 0 of one layer's attention without its class-token column, on the grid: [heads, rows, cols] (CPU).

    Raises:
        ValueError: the tensor is not [batch, heads, N + 1, N + 1] for this grid size.
        IndexError: ``batch_index`` is outside the batch.
    """
    rows, cols = _check_attention(attention, grid_size, batch_index)
    from_class_token = attention[batch_index, :, CLASS_TOKEN_INDEX, CLASS_TOKEN_INDEX + 1 :]  # [heads, N]
    return from_class_token.detach().float().cpu().reshape(-1, rows, cols)


def upsample_attention_map(attention_map: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Stretch a [rows, cols] map to ``size`` = (height, width) pixels, ``"bilinear"`` or ``"nearest"``, on the CPU;
    ValueError unless ``attention_map`` is two-dimensional."""
    if attention_map.ndim != 2:
        raise ValueError(f"Expected one map [rows, cols], got shape {tuple(attention_map.shape)}.")
    grid = attention_map.detach().float().cpu()[None, None]
    align = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(grid, size=tuple(size), mode=mode, **align)[0, 0]


def plot_attention_over_image(image: ImageLike, attention_map: torch.Tensor, ax: Optional[plt.Axes] = None,
                              alpha: float = 0.6, cmap: str = "inferno", title: Optional[str] = None,
                              normalize: bool = True) -> plt.Axes:
    """Draw one [rows, cols] attention map, upsampled bilinearly, over the image it came from; returns the Axes.

    Args:
        image: a PIL image, a tensor [C, H, W] in [0, 1], or an array [H, W, C].
        normalize: stretch the map from min to max. The colours then show where attention is higher,
            not how much: a nearly uniform map looks as contrasted as a peaked one.

    Raises:
        ValueError: the map is not [rows, cols] or the image has an unexpected shape.
    """
    pixels = image_to_hwc(image)
    heat = upsample_attention_map(attention_map, size=pixels.shape[:2])
    if normalize:
        heat = rescale_to_unit_range(heat)
    ax = ax if ax is not None else plt.subplots(figsize=(4, 4))[1]
    ax.imshow(pixels)
    ax.imshow(heat.numpy(), cmap=cmap, alpha=alpha)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def plot_attention_heads(image: ImageLike, attention_maps: torch.Tensor, titles: Optional[Sequence[str]] = None,
                         suptitle: Optional[str] = None, **kwargs) -> plt.Figure:
    """Draw the image, then each head's map [heads, rows, cols] over it (titles "head 1", ...), ``kwargs`` going to
    ``plot_attention_over_image``; returns the Figure.

    Raises:
        ValueError: ``attention_maps`` is not [heads, rows, cols], or ``titles`` has the wrong length.
    """
    if attention_maps.ndim != 3:
        raise ValueError(f"Expected maps [heads, rows, cols], got shape {tuple(attention_maps.shape)}.")
    heads = attention_maps.shape[0]
    titles = list(titles) if titles is not None else [f"head {h + 1}" for h in range(heads)]
    if len(titles) != heads:
        raise ValueError(f"Got {len(titles)} titles for {heads} heads.")
    figure, axes = plt.subplots(1, heads + 1, figsize=(3.2 * (heads + 1), 3.6), squeeze=False)
    axes[0, 0].imshow(image_to_hwc(image))
    axes[0, 0].set_title("image")
    axes[0, 0].axis("off")
    for head, (ax, title) in enumerate(zip(axes[0, 1:], titles)):
        plot_attention_over_image(image, attention_maps[head], ax=ax, title=title, **kwargs)
    if suptitle:
        figure.suptitle(suptitle)
    figure.tight_layout()
    return figure


def attention_rollout(attentions: Sequence[torch.Tensor], residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each token draws on each input token after all layers.

        A_l = mean over heads of layer l's weights                        [B, N + 1, N + 1]
        A_l = (A_l + I) / row sums      (residual=True: equation 2 adds z_{l-1} back)
        rollout = A_L @ ... @ A_2 @ A_1

    The paper's Figure 6 and appendix D.8 draw row 0 (the class token) of it:
    ``class_token_attention(rollout.unsqueeze(1), grid_size)``. Returns [batch, N + 1, N + 1] on the CPU.

    Raises:
        ValueError: the list is empty, a tensor is not [batch, heads, tokens, tokens], or the layers'
            batch sizes or token counts differ.
    """
    if len(attentions) == 0:
        raise ValueError("attention_rollout needs the attention weights of at least one layer, got an empty list.")
    first_shape = tuple(attentions[0].shape)
    rollout: Optional[torch.Tensor] = None
    for layer, weights in enumerate(attentions):
        if weights.ndim != 4 or weights.shape[-1] != weights.shape[-2]:
            raise ValueError(f"Expected attention weights [batch, heads, tokens, tokens] for every layer, got shape "
                             f"{tuple(weights.shape)} for layer {layer}.")
        if weights.shape[0] != first_shape[0] or weights.shape[-1] != first_shape[-1]:
            raise ValueError(f"Layer {layer} has shape {tuple(weights.shape)} but layer 0 has {first_shape}: every "
                             "layer must have the same batch size and number of tokens.")
        mixed = weights.detach().float().cpu().mean(dim=1)  # [B, T, T]
        if residual:
            mixed = mixed + torch.eye(mixed.shape[-1])
            mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    return rollout


def patch_distances(grid_size: GridSize, patch_size: int) -> torch.Tensor:
    """Distance in pixels between the centres of every two patches of the grid, [N, N] in row-major order;
    ValueError unless ``patch_size`` and the grid size are positive."""
    rows, cols = to_pair(grid_size, name="grid_size")
    if patch_size < 1:
        raise ValueError(f"patch_size must be positive, got {patch_size}.")
    row_index, col_index = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    centres = torch.stack([row_index.flatten(), col_index.flatten()], dim=1).float() * patch_size  # [N, 2]
    # The exact (not matrix-product) computation, so that distances of whole patch steps are exact.
    return torch.cdist(centres, centres, compute_mode="donot_use_mm_for_euclid_dist")


def mean_attention_distance(
    attention: torch.Tensor, grid_size: GridSize, patch_size: int, renormalize: bool = True
) -> torch.Tensor:
    """Each head's mean attention distance in pixels for one layer: [heads] (Figure 7 right, appendix D.7).

    "the average distance in image space across which information is integrated, based on the attention
    weights": each query patch's distances to the patches, weighted by its attention, averaged over queries and
    images. The class token is left out; ``renormalize`` rescales each query's patch weights to sum to 1 (False: the
    class token's weight counts as distance 0). Uniform attention on 14 x 14 patches of 16 pixels gives about 116.

    Raises:
        ValueError: the tensor is not [batch, heads, N + 1, N + 1] for this grid size, or ``patch_size`` is below 1.
    """
    rows, cols = _check_attention(attention, grid_size)
    distances = patch_distances((rows, cols), patch_size)                        # [N, N]
    patch_to_patch = attention.detach().float().cpu()[:, :, 1:, 1:]             # [B, heads, N, N]
    if renormalize:
        # A query that gives everything to the class token has no patch weights: it counts as distance 0.
        patch_to_patch = patch_to_patch / patch_to_patch.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    per_query = (patch_to_patch * distances).sum(dim=-1)                        # [B, heads, N]
    return per_query.mean(dim=(0, 2))


def plot_attention_matrix(attention: torch.Tensor, image: ImageLike, grid_size: GridSize, head: int = 1,
                          query: int = CLASS_TOKEN_INDEX, batch_index: int = 0, title: Optional[str] = None,
                          cmap: str = "viridis", log_scale: bool = False) -> plt.Figure:
    """One head's attention matrix A [N + 1, N + 1] as a heatmap (the row of ``query`` outlined), beside that row
    without its class-token column over the image; returns the Figure.

    Args:
        head: counted from 1, as the course's figures number heads.
        query: the token whose row is drawn over the image: 0 (the class token) or a patch 1..N.
        log_scale: colour the matrix logarithmically over four decades below its largest weight, so that
            0.001 and 0.01 differ; the image panel stays linear.

    Raises:
        ValueError: the tensor is not [batch, heads, N + 1, N + 1] for this grid size, ``head`` is not in
            1..heads, or ``query`` is not in 0..N.
        IndexError: ``batch_index`` is outside the batch.
    """
    rows, cols = _check_attention(attention, grid_size, batch_index)
    heads, tokens = attention.shape[1], attention.shape[-1]
    if not 1 <= head <= heads:
        raise ValueError(f"head counts from 1: expected 1 ... {heads} for {heads} heads, got {head}.")
    if not 0 <= query < tokens:
        raise ValueError(f"query must be a token 0 ... {tokens - 1} (0 is the class token), got {query}.")
    matrix = attention[batch_index, head - 1].detach().float().cpu()        # [N + 1, N + 1]
    row_map = matrix[query, CLASS_TOKEN_INDEX + 1 :].reshape(rows, cols)    # the query's weights on the patches
    pixels = image_to_hwc(image)
    height, width = pixels.shape[:2]

    figure, (matrix_ax, image_ax) = plt.subplots(1, 2, figsize=(11, 4.9), gridspec_kw={"width_ratios": [1, 1]})
    norm = None
    if log_scale:
        # Four orders of magnitude below the largest weight; anything smaller gets the lowest colour.
        high = max(matrix.max().item(), 1e-12)
        positive = matrix[matrix > 0]
        low = max(positive.min().item() if positive.numel() else 0.0, high * 1e-4)
        norm = LogNorm(vmin=min(low, high / 10), vmax=high)
    shown = matrix_ax.imshow(matrix.numpy(), cmap=cmap, norm=norm, interpolation="nearest")
    figure.colorbar(shown, ax=matrix_ax, fraction=0.046, pad=0.04,
                    label="attention weight" + (" (log scale)" if log_scale else ""))
    matrix_ax.add_patch(plt.Rectangle((-0.5, query - 0.5), tokens, 1, fill=False, edgecolor="red", linewidth=1.2))
    matrix_ax.set(xlabel="key token j (0 = class token, 1 ... N = patches)", ylabel="query token i")
    matrix_ax.set_title(f"head {head}: A, {tokens} x {tokens} (each row sums to 1)", fontsize=11)

    heat = upsample_attention_map(row_map, size=(height, width), mode="nearest")
    image_ax.imshow(pixels)
    overlay = image_ax.imshow(heat.numpy(), cmap=cmap, alpha=0.65)
    # The colour bar is drawn opaque (the overlay is see-through so that the photo shows).
    figure.colorbar(ScalarMappable(norm=overlay.norm, cmap=overlay.cmap), ax=image_ax, fraction=0.046, pad=0.04,
                    label="attention weight")
    if query == CLASS_TOKEN_INDEX:
        who = "the class token (row 0 of A)"
    else:
        row, col = divmod(query - 1, cols)
        cell_h, cell_w = height / rows, width / cols
        image_ax.add_patch(plt.Rectangle((col * cell_w, row * cell_h), cell_w, cell_h, fill=False,
                                         edgecolor="red", linewidth=1.5))
        who = f"patch {query} (row {query} of A)"
    image_ax.set_title(f"head {head}: {who} over the {rows} x {cols} patches", fontsize=11)
    image_ax.axis("off")
    figure.suptitle(title or f"Attention matrix of head {head} and the red row drawn over the image")
    figure.tight_layout()
    return figure


def plot_qkv_heads(num_heads: int = 12, head_dim: int = 64) -> plt.Figure:
    """Diagram of the reshape in equation 2's attention: one token's 3 * heads * D_h qkv numbers, laid out as
    [q | k | v] with each part [head 1 | ... | head h], become q, k and v, each ``num_heads`` rows of D_h numbers.
    ValueError when ``num_heads`` or ``head_dim`` is below 1."""
    if num_heads < 1 or head_dim < 1:
        raise ValueError(f"num_heads and head_dim must be at least 1, got {num_heads} and {head_dim}.")
    colours = {"q": plt.cm.Blues, "k": plt.cm.Oranges, "v": plt.cm.Greens}
    figure, ax = plt.subplots(figsize=(11, 3.6))
    width = 1.0 / (3 * num_heads)  # one head's D_h numbers in the top bar
    for part, (name, cmap) in enumerate(colours.items()):
        for head in range(num_heads):
            colour = cmap(0.35 + 0.5 * head / max(num_heads - 1, 1))
            left = (part * num_heads + head) * width
            ax.add_patch(plt.Rectangle((left, 0.8), width, 0.12, facecolor=colour, edgecolor="white"))
            row = 0.62 - 0.5 * (head + 1) / num_heads  # the same numbers, as row ``head`` of the part's block
            ax.add_patch(plt.Rectangle((part * 0.36, row), 0.28, 0.5 / num_heads, facecolor=colour, edgecolor="white"))
        ax.text((part + 0.5) / 3, 0.95, f"{name}: {num_heads} heads x {head_dim}", ha="center", fontsize=10)
        ax.text(part * 0.36 + 0.14, 0.64, f"{name}: [heads = {num_heads}, D_h = {head_dim}]", ha="center", fontsize=10)
        ax.annotate("", xy=(part * 0.36 + 0.14, 0.68), xytext=((part + 0.5) / 3, 0.79),
                    arrowprops={"arrowstyle": "->", "color": "grey"})
    for head in (0, num_heads - 1):  # name the first and last rows once, beside the q block
        ax.text(-0.01, 0.62 - 0.5 * (head + 0.5) / num_heads, f"head {head + 1}", ha="right", va="center", fontsize=8)
    ax.text(-0.01, 0.86, f"one token's\nqkv output,\n3 x {num_heads} x {head_dim}\n= {3 * num_heads * head_dim}",
            ha="right", va="center", fontsize=9)
    ax.set(xlim=(-0.12, 1.0), ylim=(0.05, 1.0))
    ax.axis("off")
    ax.set_title("reshape(B, N + 1, 3, heads, D_h) then permute(2, 0, 3, 1, 4): each head gets its own slice of "
                 "q, k and v", fontsize=11)
    return figure
