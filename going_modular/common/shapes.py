"""Image and patch-grid sizes: one int or a (height, width) pair, and whether an image splits into patches
(equation 1 cuts an H x W image into N = H W / P^2 patches of P x P pixels, so H and W must be multiples of P)."""
from __future__ import annotations

from typing import Union

ImageSize = Union[int, tuple[int, int]]  # a square side in pixels (or patches), or (height, width) / (rows, columns)


def to_pair(size: ImageSize, name: str = "size") -> tuple[int, int]:
    """``size`` as (height, width): an int ``s`` means the square (s, s); ``name`` is for the error message;
    ValueError when ``size`` is not one int or two, or a value is below 1."""
    if not isinstance(size, int) and len(size) != 2:
        raise ValueError(f"{name} must be one int or a (height, width) pair, got {size!r}.")
    pair = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {size!r}.")
    return pair


def check_divisible_by_patch_size(height: int, width: int, patch_size: int) -> None:
    """Raise a ValueError, naming the nearest size that works, unless H x W splits into P x P patches (eq. 1)."""
    if patch_size < 1:
        raise ValueError(f"patch_size must be positive, got {patch_size}.")
    if height % patch_size or width % patch_size:
        nearest_height, nearest_width = (max(1, round(side / patch_size)) * patch_size for side in (height, width))
        raise ValueError(f"Image height and width must be divisible by the patch size {patch_size}, got {height} x "
                         f"{width}. Resize the image, e.g. to {nearest_height} x {nearest_width}.")
