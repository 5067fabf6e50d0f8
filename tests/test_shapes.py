"""going_modular.common.shapes: sizes as an int or a pair, and the image-divisible-by-patch check of equation 1."""
import pytest

from going_modular.common.shapes import check_divisible_by_patch_size, to_pair


@pytest.mark.parametrize("size, expected", [(224, (224, 224)), ((32, 48), (32, 48)), ([14, 7], (14, 7))])
def test_to_pair_turns_an_int_into_a_square_and_keeps_a_pair(size, expected):
    assert to_pair(size) == expected


@pytest.mark.parametrize("size, message", [
    (0, r"img_size must be positive, got 0\."),
    ((32, -16), r"img_size must be positive, got \(32, -16\)\."),
    ((3, 32, 32), r"img_size must be one int or a \(height, width\) pair, got \(3, 32, 32\)\."),
])
def test_to_pair_rejects_bad_sizes_naming_them(size, message):
    with pytest.raises(ValueError, match=message):
        to_pair(size, name="img_size")


def test_check_divisible_accepts_whole_patches():
    check_divisible_by_patch_size(224, 224, 16)
    check_divisible_by_patch_size(32, 48, 16)


@pytest.mark.parametrize("height, width, patch_size, nearest", [
    (30, 32, 16, "32 x 32"),    # up to the nearest multiple
    (230, 224, 16, "224 x 224"),  # down to the nearest multiple
    (5, 44, 16, "16 x 48"),     # never below one patch
])
def test_check_divisible_names_both_sizes_and_the_nearest_that_works(height, width, patch_size, nearest):
    message = (
        f"Image height and width must be divisible by the patch size {patch_size}, got {height} x {width}. "
        f"Resize the image, e.g. to {nearest}."
    )
    with pytest.raises(ValueError) as info:
        check_divisible_by_patch_size(height, width, patch_size)
    assert str(info.value) == message


def test_check_divisible_rejects_a_patch_size_below_one():
    with pytest.raises(ValueError, match="patch_size must be positive, got 0"):
        check_divisible_by_patch_size(32, 32, 0)
