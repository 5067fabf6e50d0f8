"""Pictures of what a ViT attends to (notebooks 02 and 07), from the weights ``ViT(..., return_attention=True)``
returns: per layer, softmax(q k^T / sqrt(D_h)) of equation 2 as [batch, heads, N + 1, N + 1], token 0 the class
token and tokens 1..N the patches in row-major order on the grid ``model.grid_size`` (equation 1)."""
from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.colors import LogNorm

from going_modular.common.shapes import ImageSize, to_pair
from going_modular.figures.plotting import ImageLike, finish_figure, panel_grid, image_to_hwc, rescale_to_unit_range

CLASS_TOKEN_INDEX = 0  # z_0 = [x_class; x_p^1 E; ...]: the class token comes first (equation 1)


def _check_attention(attention: torch.Tensor, grid_size: ImageSize, batch_index: int = 0) -> tuple[int, int]:
    """(rows, cols) of the grid, once ``attention`` is [batch, heads, N + 1, N + 1] and ``batch_index`` in range."""
    rows, cols = to_pair(grid_size, name="grid_size")
    if attention.ndim != 4 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"Expected attention weights [batch, heads, tokens, tokens], got {tuple(attention.shape)}.")
    if attention.shape[-1] != rows * cols + 1:
        raise ValueError(f"A {rows} x {cols} patch grid plus the class token is {rows * cols + 1} tokens, but the "
                         f"attention weights have {attention.shape[-1]} tokens (shape {tuple(attention.shape)}).")
    if not -attention.shape[0] <= batch_index < attention.shape[0]:
        raise IndexError(f"batch_index {batch_index} is outside a batch of {attention.shape[0]}.")
    return rows, cols


def class_token_attention(attention: torch.Tensor, grid_size: ImageSize, batch_index: int = 0) -> torch.Tensor:
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
    return F.interpolate(attention_map.detach().float().cpu()[None, None], size=tuple(size), mode=mode)[0, 0]


def plot_attention_over_image(image: ImageLike, attention_map: torch.Tensor, ax: Optional[plt.Axes] = None,
                              alpha: float = 0.6, cmap: str = "inferno", title: Optional[str] = None,
                              normalize: bool = True) -> plt.Axes:
    """Draw one [rows, cols] attention map, upsampled bilinearly, over its image (ValueError for other shapes).
    ``normalize`` stretches the map from min to max: colours then show where attention is higher, not how much."""
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
    ``plot_attention_over_image``; returns the Figure. ValueError for another shape or number of ``titles``."""
    if attention_maps.ndim != 3:
        raise ValueError(f"Expected maps [heads, rows, cols], got shape {tuple(attention_maps.shape)}.")
    heads = attention_maps.shape[0]
    titles = list(titles) if titles is not None else [f"head {h + 1}" for h in range(heads)]
    if len(titles) != heads:
        raise ValueError(f"Got {len(titles)} titles for {heads} heads.")
    figure, axes = panel_grid(heads + 1, heads + 1, width=3.2, height=3.6)  # one row: the image, then each head
    axes[0].imshow(image_to_hwc(image))
    axes[0].set_title("image")
    for ax, title, attention_map in zip(axes[1:], titles, attention_maps):
        plot_attention_over_image(image, attention_map, ax=ax, title=title, **kwargs)
    return finish_figure(figure, suptitle)


def attention_rollout(attentions: Sequence[torch.Tensor], residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): rollout = A_L @ ... @ A_1, [batch, N + 1, N + 1] on the CPU, with
    A_l layer l's weights averaged over heads and, if ``residual`` (equation 2 adds z_{l-1} back), (A_l + I) / row
    sums. Figure 6 and appendix D.8 draw row 0: ``class_token_attention(rollout.unsqueeze(1), grid_size)``. ValueError
    for an empty list, a tensor not [batch, heads, tokens, tokens], or layers of unequal batch sizes or token counts."""
    if len(attentions) == 0:
        raise ValueError("attention_rollout needs the attention weights of at least one layer, got an empty list.")
    first_shape = tuple(attentions[0].shape)
    rollout = None
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


def patch_distances(grid_size: ImageSize, patch_size: int) -> torch.Tensor:
    """Distance in pixels between the centres of every two patches of the grid, [N, N] in row-major order;
    ValueError unless ``patch_size`` and the grid size are positive."""
    rows, cols = to_pair(grid_size, name="grid_size")
    if patch_size < 1:
        raise ValueError(f"patch_size must be positive, got {patch_size}.")
    centres = torch.cartesian_prod(torch.arange(rows), torch.arange(cols)).float() * patch_size  # [N, 2], row-major
    # The exact (not matrix-product) computation, so that distances of whole patch steps are exact.
    return torch.cdist(centres, centres, compute_mode="donot_use_mm_for_euclid_dist")


def mean_attention_distance(attention: torch.Tensor, grid_size: ImageSize, patch_size: int,
                            renormalize: bool = True) -> torch.Tensor:
    """Each head's mean attention distance in pixels for one layer, [heads] (Figure 7 right, appendix D.7): the
    attention-weighted distance to the patches, averaged over query patches and images. ``renormalize`` rescales
    each query's patch weights to sum to 1 (False: the class token's weight counts as distance 0). Uniform attention
    on 14 x 14 patches of 16 pixels gives about 116. ValueError for a mis-shaped tensor or a ``patch_size`` below 1."""
    rows, cols = _check_attention(attention, grid_size)
    patch_to_patch = attention.detach().float().cpu()[:, :, 1:, 1:]             # [B, heads, N, N]
    if renormalize:
        # A query that gives everything to the class token has no patch weights: it counts as distance 0.
        patch_to_patch = patch_to_patch / patch_to_patch.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return (patch_to_patch * patch_distances((rows, cols), patch_size)).sum(dim=-1).mean(dim=(0, 2))


def plot_attention_matrix(attention: torch.Tensor, image: ImageLike, grid_size: ImageSize, head: int = 1,
                          query: int = CLASS_TOKEN_INDEX, batch_index: int = 0, title: Optional[str] = None,
                          cmap: str = "viridis", log_scale: bool = False) -> plt.Figure:
    """One head's attention matrix A [N + 1, N + 1] as a heatmap, the row of ``query`` (0: the class token, or a
    patch 1..N) outlined, beside that row's patch weights over the image; returns the Figure. ``head`` counts from
    1; ``log_scale`` colours the matrix over four decades below its largest weight (the image panel stays linear).

    Raises:
        ValueError: ``attention`` is mis-shaped for this grid, ``head`` is not in 1..heads, or ``query`` not in 0..N.
        IndexError: ``batch_index`` is outside the batch.
    """
    rows, cols = _check_attention(attention, grid_size, batch_index)
    heads, tokens = attention.shape[1], attention.shape[-1]
    if not 1 <= head <= heads:
        raise ValueError(f"head counts from 1: expected 1 ... {heads} for {heads} heads, got {head}.")
    if not 0 <= query < tokens:
        raise ValueError(f"query must be a token 0 ... {tokens - 1} (0 is the class token), got {query}.")
    matrix = attention[batch_index, head - 1].detach().float().cpu()        # [N + 1, N + 1]
    pixels = image_to_hwc(image)
    height, width = pixels.shape[:2]
    figure, (matrix_ax, image_ax) = plt.subplots(1, 2, figsize=(11, 4.9), gridspec_kw={"width_ratios": [1, 1]})
    # log_scale: four decades below the largest weight, anything smaller getting the lowest colour.
    high = max(matrix.max().item(), 1e-12)
    low = max(matrix[matrix > 0].min().item() if (matrix > 0).any() else 0.0, high * 1e-4)
    norm = LogNorm(vmin=min(low, high / 10), vmax=high) if log_scale else None
    shown = matrix_ax.imshow(matrix.numpy(), cmap=cmap, norm=norm, interpolation="nearest")
    figure.colorbar(shown, ax=matrix_ax, fraction=0.046, pad=0.04,
                    label="attention weight" + (" (log scale)" if log_scale else ""))
    matrix_ax.add_patch(plt.Rectangle((-0.5, query - 0.5), tokens, 1, fill=False, edgecolor="red", linewidth=1.2))
    matrix_ax.set(xlabel="key token j (0 = class token, 1 ... N = patches)", ylabel="query token i")
    matrix_ax.set_title(f"head {head}: A, {tokens} x {tokens} (each row sums to 1)", fontsize=11)
    row_map = matrix[query, CLASS_TOKEN_INDEX + 1 :].reshape(rows, cols)    # the query's weights on the patches
    image_ax.imshow(pixels)
    heat = upsample_attention_map(row_map, size=(height, width), mode="nearest")
    overlay = image_ax.imshow(heat.numpy(), cmap=cmap, alpha=0.65)
    # The colour bar is drawn opaque (the overlay is see-through so that the photo shows).
    figure.colorbar(plt.cm.ScalarMappable(norm=overlay.norm, cmap=overlay.cmap), ax=image_ax, fraction=0.046, pad=0.04,
                    label="attention weight")
    who = "the class token (row 0 of A)"
    if query != CLASS_TOKEN_INDEX:
        row, col = divmod(query - 1, cols)
        cell_h, cell_w = height / rows, width / cols
        image_ax.add_patch(plt.Rectangle((col * cell_w, row * cell_h), cell_w, cell_h, fill=False,
                                         edgecolor="red", linewidth=1.5))
        who = f"patch {query} (row {query} of A)"
    image_ax.set_title(f"head {head}: {who} over the {rows} x {cols} patches", fontsize=11)
    image_ax.axis("off")
    return finish_figure(figure, title or f"Attention matrix of head {head} and the red row drawn over the image")


def plot_qkv_heads(num_heads: int = 12, head_dim: int = 64) -> plt.Figure:
    """Diagram of the reshape in equation 2's attention: one token's 3 * heads * D_h qkv numbers, laid out as
    [q | k | v] with each part [head 1 | ... | head h], become q, k and v, each ``num_heads`` rows of D_h numbers.
    ValueError when ``num_heads`` or ``head_dim`` is below 1."""
    if num_heads < 1 or head_dim < 1:
        raise ValueError(f"num_heads and head_dim must be at least 1, got {num_heads} and {head_dim}.")
    figure, ax = plt.subplots(figsize=(11, 3.6))
    width = 1.0 / (3 * num_heads)  # one head's D_h numbers in the top bar
    for part, (name, cmap) in enumerate({"q": plt.cm.Blues, "k": plt.cm.Oranges, "v": plt.cm.Greens}.items()):
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
