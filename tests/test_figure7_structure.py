"""What notebook 07's Figure 7 pictures claim, pinned on the real ViT-Ti/16 weights, and false for random ones.

The paper (section 4.5): "closer patches tend to have more similar position embeddings" (Figure 7
centre), and "the attention distance increases with network depth" (Figure 7 right). Each property is
measured by one function below; the pretrained model must pass it by a clear margin and a randomly
initialised ViT-Ti/16 must fail it, so the test tells a trained model from an untrained one.

Measured on the shared weights (2-core CPU, torch 2.14), against three random initialisations:
    position embeddings, 4-neighbours minus patches >= 5 apart (mean over patches):
        pretrained 0.93 (smallest patch 0.84); random -0.003 to 0.008 (smallest patch about -0.1)
    mean attention distance, last 3 layers minus first 3 (three test photos, mean over heads):
        pretrained 145.5 - 46.4 = 99 pixels; random within 1 pixel of 0 (every layer near uniform, 116 pixels)
    mean attention distance of the heads of the first 3 layers (three test photos):
        pretrained 22 to 86 pixels (local heads beside far-looking ones); random 114 to 119 (spread under 4)
    position embeddings, patches >= 5 apart in the same row or column minus those in neither:
        pretrained 0.51 (+0.38 against -0.13); random within 0.01 of 0
    share of the filters' variance in the first 28 principal components (Figure 7 left):
        pretrained 42 %; random 27 % (three seeds)
Each threshold (0.5; 40 pixels; 40 and 30 pixels; 0.25; 0.35) sits well between the two.
"""
from typing import Callable

import pytest
import torch

from going_modular.common import settings
from going_modular.figures.attention import mean_attention_distance, patch_distances
from going_modular.data_setup import load_image
from going_modular.figures.figure7 import patch_embedding_principal_components, position_embedding_similarity
from going_modular.model_builder import ViT, create_vit
from going_modular.pretrained import PRETRAINED_WEIGHTS, load_pretrained_vit, pretrained_weights_path

NEIGHBOUR_MARGIN = 0.5    # cosine similarity
DEPTH_GROWTH_PIXELS = 40  # mean attention distance
ROW_COLUMN_MARGIN = 0.25  # cosine similarity
PRINCIPAL_SHARE = 0.35    # share of the filters' variance in the first 28 principal components
LOCAL_HEAD_PIXELS = 40    # a head of the first 3 layers at most this far ...
EARLY_SPREAD_PIXELS = 30  # ... and heads of the first 3 layers at least this far apart


@pytest.fixture(scope="module")
def pretrained_vit() -> tuple[ViT, Callable]:
    path = pretrained_weights_path("vit_ti_16_augreg")
    if not path.is_file():
        pytest.skip(f"The ViT-Ti/16 weights are not at {path}; .ci/run stages them from ../shared/weights/.")
    return load_pretrained_vit("vit_ti_16_augreg")


@pytest.fixture(scope="module")
def random_vit() -> ViT:
    torch.manual_seed(0)
    return create_vit("vit_ti_16").eval()


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """One test photo of each class of pizza_steak_sushi, as the pretrained weights expect them."""
    test_dir = settings.get_data_dir() / "pizza_steak_sushi" / "test"
    if not test_dir.is_dir():
        pytest.skip(f"{test_dir} is not there; .ci/run stages it from ../shared/data/.")
    transforms = PRETRAINED_WEIGHTS["vit_ti_16_augreg"].transforms()
    files = [sorted(folder.iterdir())[0] for folder in sorted(test_dir.iterdir()) if folder.is_dir()]
    return torch.stack([transforms(load_image(file)) for file in files])


def neighbour_similarity_margin(model: ViT) -> torch.Tensor:
    """Per patch: mean similarity of its position embedding with its 4 neighbours minus with patches >= 5 apart."""
    similarity = position_embedding_similarity(model)
    rows, cols = similarity.shape[:2]
    similarity = similarity.reshape(rows * cols, rows * cols)
    steps = patch_distances((rows, cols), patch_size=1)  # distance in patches
    near, far = (steps == 1).float(), (steps >= 5).float()
    return (similarity * near).sum(dim=1) / near.sum(dim=1) - (similarity * far).sum(dim=1) / far.sum(dim=1)


def row_column_margin(model: ViT) -> float:
    """Mean similarity of patches >= 5 apart in the same row or column, minus that of patches >= 5 apart in neither."""
    similarity = position_embedding_similarity(model)
    rows, cols = similarity.shape[:2]
    similarity = similarity.reshape(rows * cols, rows * cols)
    far = patch_distances((rows, cols), patch_size=1) >= 5
    row, col = torch.arange(rows * cols) // cols, torch.arange(rows * cols) % cols
    same_row, same_col = row[:, None] == row[None], col[:, None] == col[None]
    aligned, neither = far & (same_row | same_col), far & ~same_row & ~same_col
    return float(similarity[aligned].mean() - similarity[neither].mean())


def principal_share(model: ViT, num_components: int = 28) -> float:
    """Share of the patch-embedding filters' variance along their first principal components."""
    flat = model.patch_embedding.patcher.weight.detach().flatten(start_dim=1)
    centred = flat - flat.mean(dim=0)
    components = patch_embedding_principal_components(model, num_components).flatten(start_dim=1)
    return float((centred @ components.T).pow(2).sum() / centred.pow(2).sum())


def distances_per_layer(model: ViT, images: torch.Tensor) -> torch.Tensor:
    """[layers, heads] mean attention distance in pixels over the images."""
    with torch.no_grad():
        _, attention = model(images, return_attention=True)
    return torch.stack([mean_attention_distance(weights, model.grid_size, model.patch_size) for weights in attention])


def attention_distance_growth(model: ViT, images: torch.Tensor) -> float:
    """Mean attention distance (pixels, mean over heads) of the last 3 layers minus that of the first 3."""
    per_layer = distances_per_layer(model, images).mean(dim=1)
    return float(per_layer[-3:].mean() - per_layer[:3].mean())


def test_neighbouring_patches_have_more_similar_position_embeddings(pretrained_vit):
    margin = neighbour_similarity_margin(pretrained_vit[0])
    assert margin.mean() > NEIGHBOUR_MARGIN, f"mean margin over patches: {margin.mean():.3f}"
    assert margin.min() > 0, f"a patch closer to far patches than to its neighbours: margin {margin.min():.3f}"


def test_random_position_embeddings_show_no_neighbourhood(random_vit):
    margin = neighbour_similarity_margin(random_vit)
    assert not (margin.mean() > NEIGHBOUR_MARGIN and margin.min() > 0)
    assert abs(margin.mean()) < 0.1  # no structure at all, not merely a weaker one


def test_attention_distance_grows_with_depth(pretrained_vit, photos):
    growth = attention_distance_growth(pretrained_vit[0], photos)
    assert growth > DEPTH_GROWTH_PIXELS, f"last 3 layers minus first 3: {growth:.1f} pixels"


def test_random_weights_attend_equally_far_at_every_depth(random_vit, photos):
    growth = attention_distance_growth(random_vit, photos)
    assert not growth > DEPTH_GROWTH_PIXELS
    assert abs(growth) < 10, f"last 3 layers minus first 3: {growth:.1f} pixels"


def test_patches_in_the_same_row_or_column_have_more_similar_position_embeddings(pretrained_vit, random_vit):
    assert row_column_margin(pretrained_vit[0]) > ROW_COLUMN_MARGIN
    assert abs(row_column_margin(random_vit)) < 0.05


def test_learned_filters_concentrate_their_variance_in_the_first_components(pretrained_vit, random_vit):
    assert principal_share(pretrained_vit[0]) > PRINCIPAL_SHARE
    assert principal_share(random_vit) < PRINCIPAL_SHARE


def test_early_layers_hold_local_heads_beside_far_looking_ones(pretrained_vit, photos):
    early = distances_per_layer(pretrained_vit[0], photos)[:3]
    assert early.min() < LOCAL_HEAD_PIXELS, f"closest head of the first 3 layers: {early.min():.1f} pixels"
    assert early.max() - early.min() > EARLY_SPREAD_PIXELS, f"spread: {early.max() - early.min():.1f} pixels"


def test_random_weights_have_no_local_heads(random_vit, photos):
    early = distances_per_layer(random_vit, photos)[:3]
    assert not (early.min() < LOCAL_HEAD_PIXELS and early.max() - early.min() > EARLY_SPREAD_PIXELS)
    assert early.max() - early.min() < 10, f"spread: {early.max() - early.min():.1f} pixels"
