"""going_modular.pretrained: other libraries' weights in the course's ViT, and the named pretrained weights.

Offline and fast: downloads are simulated (requests.get is replaced), tiny timm-layout files are made
here, and the tests on the real ViT-Ti/16 weights skip with a reason when the file is not staged
(``.ci/run`` copies it from ../shared/weights/ to where ``settings.get_weights_dir()`` finds it).
"""
import importlib
import json
import math
import sys
import urllib.error
from pathlib import Path

import pytest
import requests
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from going_modular import features, pretrained, train
from going_modular.common import settings
from going_modular.data_setup import VIT_MEAN, VIT_STD, load_image
from going_modular.model_builder import ViT
from going_modular.training import recipe
from going_modular.pretrained import (
    PretrainedWeights,
    PretrainedWeightsFileError,
    PretrainedWeightsUnavailableError,
    create_vit_feature_extractor,
    load_pretrained_vit,
    vit_from_timm_state_dict,
    vit_from_torchvision,
    vit_to_torchvision,
)

VIT_TI_PARAMETERS = 5_717_416  # the shared file's count (its README), 1000-class head included


def count(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any download a test did not simulate fails the test instead of reaching the internet."""
    def refuse(url, *args, **kwargs):
        pytest.fail(f"A test tried to download {url}.")

    monkeypatch.setattr(requests, "get", refuse)


# Parity with torchvision
def _randomised(model: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


@pytest.mark.parametrize("config", [
    dict(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5),
    dict(image_size=48, patch_size=16, num_layers=3, num_heads=4, hidden_dim=32, mlp_dim=20, num_classes=7),
    dict(image_size=30, patch_size=5, num_layers=1, num_heads=3, hidden_dim=12, mlp_dim=24, num_classes=2,
         representation_size=8),
])
def test_torchvision_parity_on_small_configurations(config):
    reference = _randomised(torchvision.models.VisionTransformer(**config), seed=1)
    ours = vit_from_torchvision(reference)
    assert not ours.training and count(ours) == count(reference)
    images = torch.randn(3, 3, config["image_size"], config["image_size"])
    with torch.no_grad():
        expected = reference(images)
        assert expected.abs().max() > 0.1  # the comparison is not of zeros
        assert (ours(images) - expected).abs().max() <= 1e-5
        assert (ours(images, return_attention=True)[0] - expected).abs().max() <= 1e-5


def test_torchvision_parity_vit_b_16():
    torch.manual_seed(0)
    reference = torchvision.models.vit_b_16().eval()
    nn.init.normal_(reference.heads.head.weight, std=0.05)  # logits of a few units, not zeros
    ours = vit_from_torchvision(reference)
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():  # torchvision's inference fast path: a different kernel, float32 rounding apart
        expected = reference(images)
        assert expected.abs().max() > 1.0
        assert (ours(images) - expected).abs().max() <= 1e-5
    # With gradients on, torchvision runs the same fused attention kernel as ours: equal to float32
    # rounding (a different BLAS may sum in another order, so not bit for bit).
    torch.testing.assert_close(ours(images), reference(images), atol=1e-5, rtol=0)


def test_vit_from_torchvision_refuses_other_models():
    with pytest.raises(TypeError, match="VisionTransformer"):
        vit_from_torchvision(nn.Linear(2, 2))


# The pretrained feature extractor of notebook 06 (offline here: the download is simulated to fail)
@pytest.fixture
def offline(monkeypatch):
    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)


def test_feature_extractor_offline_raises_clear_error(offline):
    with pytest.raises(pretrained.PretrainedWeightsUnavailableError, match="allow_random_weights=True") as info:
        create_vit_feature_extractor(num_classes=3)
    assert "https://download.pytorch.org/models/vit_b_16" in str(info.value)


def test_the_feature_extractors_names_say_which_model_they_build(offline):
    with pytest.warns(pretrained.RandomWeightsWarning):
        torchvision_model, torchvision_transforms = pretrained.torchvision_vit_b_16_feature_extractor(
            3, allow_random_weights=True)
    assert isinstance(torchvision_model, torchvision.models.VisionTransformer)
    assert (torchvision_model.hidden_dim, torchvision_model.patch_size) == (768, 16)  # ViT-B/16
    assert torchvision_model.preprocessing is torchvision_transforms
    assert pretrained.create_vit_feature_extractor is pretrained.torchvision_vit_b_16_feature_extractor  # old name


def test_feature_extractor_offline_opt_in_warns_and_freezes_backbone(offline):
    with pytest.warns(pretrained.RandomWeightsWarning, match="RANDOM weights"):
        model, transforms = create_vit_feature_extractor(num_classes=3, allow_random_weights=True)
    assert model.pretrained is False
    assert count(model, trainable_only=True) == 2_307
    assert torch.count_nonzero(model.heads.head.weight) == 0  # the paper's zero-initialised head
    assert transforms(torch.rand(3, 300, 260)).shape == (3, 224, 224)
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 3)
    assert count(vit_from_torchvision(model)) == count(model)  # the new head converts like any other


def test_feature_extractor_offline_opt_in_keeps_the_weights_resolution(offline):
    # SWAG's end-to-end weights are for 384 x 384 images: the random stand-in must be built for 384 too.
    with pytest.warns(pretrained.RandomWeightsWarning):
        model, transforms = create_vit_feature_extractor(3, weights="IMAGENET1K_SWAG_E2E_V1", allow_random_weights=True)
    assert model.image_size == 384
    assert transforms(torch.rand(3, 500, 400)).shape == (3, 384, 384)
    assert model(transforms(torch.rand(3, 500, 400)).unsqueeze(0)).shape == (1, 3)


def test_resize_position_embedding_keeps_class_token_and_constants():
    position_embedding = torch.randn(1, 1 + 14 * 14, 8)
    position_embedding[:, 1:, 0] = 0.25  # a constant feature stays constant under interpolation
    resized = pretrained.resize_position_embedding(position_embedding, 24)
    assert resized.shape == (1, 1 + 24 * 24, 8)
    assert torch.equal(resized[:, 0], position_embedding[:, 0])
    torch.testing.assert_close(resized[:, 1:, 0], torch.full((1, 576), 0.25))
    assert pretrained.resize_position_embedding(position_embedding, (14, 14)) is position_embedding


def test_resize_position_embedding_follows_the_grid_layout():
    # One embedding dimension holds the row index: after resizing it must still increase down the rows.
    rows = torch.arange(4.0).repeat_interleave(4)
    position_embedding = torch.cat((torch.zeros(1, 1, 1), rows.reshape(1, 16, 1)), dim=1)
    resized = pretrained.resize_position_embedding(position_embedding, (8, 2))[0, 1:, 0].reshape(8, 2)
    assert torch.all(resized[1:, 0] >= resized[:-1, 0]) and torch.allclose(resized[:, 0], resized[:, 1])


def test_resize_position_embedding_lets_a_model_run_at_a_new_resolution():
    model = ViT(img_size=32, patch_size=8, num_transformer_layers=1, embedding_dim=16, mlp_size=32, num_heads=2).eval()
    bigger = ViT(img_size=48, patch_size=8, num_transformer_layers=1, embedding_dim=16, mlp_size=32, num_heads=2)
    state = model.state_dict()
    state["position_embedding"] = pretrained.resize_position_embedding(state["position_embedding"], 6)
    bigger.load_state_dict(state)
    assert bigger.eval()(torch.randn(2, 3, 48, 48)).shape == (2, 1000)


@pytest.mark.parametrize("bad", [torch.zeros(1, 1 + 15, 4), torch.zeros(2, 17, 4), torch.zeros(17, 4)])
def test_resize_position_embedding_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="square grid|Expected a position embedding"):
        pretrained.resize_position_embedding(bad, 4)


# timm's layout -> the course's ViT
def _random_timm_state_dict(image_size: int, patch_size: int, depth: int, width: int, mlp_size: int,
                            num_classes: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the names and shapes of a timm ViT (norm weights near 1, the rest near 0)."""
    generator = torch.Generator().manual_seed(seed)
    shapes = {
        "cls_token": (1, 1, width),
        "pos_embed": (1, 1 + (image_size // patch_size) ** 2, width),
        "patch_embed.proj.weight": (width, 3, patch_size, patch_size),
        "patch_embed.proj.bias": (width,),
        "norm.weight": (width,), "norm.bias": (width,),
        "head.weight": (num_classes, width), "head.bias": (num_classes,),
    }
    for i in range(depth):
        for name, shape in {"norm1": (width,), "attn.qkv": (3 * width, width), "attn.proj": (width, width),
                            "norm2": (width,), "mlp.fc1": (mlp_size, width), "mlp.fc2": (width, mlp_size)}.items():
            shapes[f"blocks.{i}.{name}.weight"] = shape
            shapes[f"blocks.{i}.{name}.bias"] = shape[:1]
    tensors = {name: 0.1 * torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    for name in tensors:
        if "norm" in name and name.endswith("weight"):
            tensors[name] += 1.0
    return tensors


def _timm_to_torchvision(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's names -> torchvision's (the test's own mapping, independent of the package's)."""
    renamed = {
        "class_token": state_dict["cls_token"],
        "encoder.pos_embedding": state_dict["pos_embed"],
        "conv_proj.weight": state_dict["patch_embed.proj.weight"],
        "conv_proj.bias": state_dict["patch_embed.proj.bias"],
        "encoder.ln.weight": state_dict["norm.weight"],
        "encoder.ln.bias": state_dict["norm.bias"],
        "heads.head.weight": state_dict["head.weight"],
        "heads.head.bias": state_dict["head.bias"],
    }
    depth = len({key.split(".")[1] for key in state_dict if key.startswith("blocks.")})
    for i in range(depth):
        for kind in ("weight", "bias"):
            for timm_name, torchvision_name in [("norm1.", "ln_1."), ("attn.qkv.", "self_attention.in_proj_"),
                                                ("attn.proj.", "self_attention.out_proj."), ("norm2.", "ln_2."),
                                                ("mlp.fc1.", "mlp.0."), ("mlp.fc2.", "mlp.3.")]:
                theirs = f"encoder.layers.encoder_layer_{i}.{torchvision_name}{kind}"
                renamed[theirs] = state_dict[f"blocks.{i}.{timm_name}{kind}"]
    return renamed


def _torchvision_reference(state_dict: dict[str, torch.Tensor], num_heads: int) -> torchvision.models.VisionTransformer:
    width = state_dict["cls_token"].shape[-1]
    patch_size = state_dict["patch_embed.proj.weight"].shape[-1]
    reference = torchvision.models.VisionTransformer(
        image_size=int((state_dict["pos_embed"].shape[1] - 1) ** 0.5) * patch_size,
        patch_size=patch_size,
        num_layers=len({key.split(".")[1] for key in state_dict if key.startswith("blocks.")}),
        num_heads=num_heads,
        hidden_dim=width,
        mlp_dim=state_dict["blocks.0.mlp.fc1.weight"].shape[0],
        num_classes=state_dict["head.weight"].shape[0],
    )
    reference.load_state_dict(_timm_to_torchvision(state_dict), strict=True)
    return reference.eval()


def _assert_same_logits(ours: ViT, reference: nn.Module, image_size: int) -> None:
    images = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference(images)
        assert expected.abs().max() > 0.1  # the comparison is not of zeros
        assert (ours(images) - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("shape, num_heads", [
    (dict(image_size=32, patch_size=8, depth=2, width=24, mlp_size=40, num_classes=5), 4),  # heads given
    (dict(image_size=48, patch_size=16, depth=3, width=384, mlp_size=64, num_classes=7), None),  # ViT-S's 6 heads
])
def test_timm_state_dict_gives_torchvision_logits_on_random_tensors(shape, num_heads):
    state_dict = _random_timm_state_dict(**shape)
    ours = vit_from_timm_state_dict(state_dict, num_heads=num_heads)
    assert not ours.training and ours.img_size == (shape["image_size"],) * 2 and ours.patch_size == shape["patch_size"]
    assert len(ours.transformer_encoder) == shape["depth"] and ours.head.out_features == shape["num_classes"]
    assert ours.transformer_encoder[0].msa_block.num_heads == (num_heads or 6)
    _assert_same_logits(ours, _torchvision_reference(state_dict, num_heads or 6), shape["image_size"])


@pytest.mark.parametrize("shape, num_heads", [
    (dict(image_size=32, patch_size=8, depth=2, width=24, mlp_size=40, num_classes=5), 4),
    (dict(image_size=48, patch_size=16, depth=1, width=12, mlp_size=20, num_classes=3), 3),
])
def test_vit_to_torchvision_gives_the_reference_built_by_the_tests_own_mapping(shape, num_heads):
    state_dict = _random_timm_state_dict(**shape, seed=4)
    ours = vit_from_timm_state_dict(state_dict, num_heads=num_heads)
    converted = vit_to_torchvision(ours)
    reference = _torchvision_reference(state_dict, num_heads)
    assert isinstance(converted, torchvision.models.VisionTransformer) and not converted.training
    assert converted.state_dict().keys() == reference.state_dict().keys()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(converted.state_dict()[name], tensor), name
    assert converted.encoder.layers[0].num_heads == num_heads
    _assert_same_logits(ours, converted, shape["image_size"])


def test_vit_to_torchvision_and_back_is_the_same_model():
    ours = ViT(img_size=32, patch_size=8, num_transformer_layers=2, embedding_dim=16, mlp_size=24, num_heads=2,
               num_classes=3, representation_size=6)
    _randomised(ours, seed=5)
    back = vit_from_torchvision(vit_to_torchvision(ours.train()))
    assert back.training
    assert all(torch.equal(tensor, ours.state_dict()[name]) for name, tensor in back.state_dict().items())


@pytest.mark.parametrize("overrides, message", [
    (dict(pool="mean"), 'pool="mean"'),
    (dict(img_size=(32, 48)), "non-square images"),
    (dict(qkv_bias=False), "qkv_bias=False"),
])
def test_vit_to_torchvision_names_what_torchvision_lacks(overrides, message):
    model = ViT(**{**dict(img_size=32, patch_size=8, num_transformer_layers=1, embedding_dim=8, mlp_size=8,
                          num_heads=2, num_classes=2), **overrides})
    with pytest.raises(ValueError, match=message):
        vit_to_torchvision(model)
    with pytest.raises(TypeError, match="Linear"):
        vit_to_torchvision(nn.Linear(2, 2))


@pytest.fixture(scope="module")
def vit_ti_state_dict() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = pretrained.pretrained_weights_path("vit_ti_16_augreg")
    if not path.is_file():
        pytest.skip(f"The ViT-Ti/16 weights are not at {path}; .ci/run stages them from ../shared/weights/.")
    return load_file(path)


def test_timm_state_dict_gives_torchvision_logits_on_the_shared_vit_ti_weights(vit_ti_state_dict):
    ours = vit_from_timm_state_dict(vit_ti_state_dict)  # 3 heads: the default for D = 192
    assert count(ours) == VIT_TI_PARAMETERS
    _assert_same_logits(ours, _torchvision_reference(vit_ti_state_dict, num_heads=3), 224)
    _assert_same_logits(ours, vit_to_torchvision(ours), 224)


def test_a_new_head_is_zero_and_keeps_the_backbone():
    state_dict = _random_timm_state_dict(32, 8, 2, 24, 40, num_classes=5)
    with_checkpoint_head = vit_from_timm_state_dict(state_dict, num_heads=4)
    with_new_head = vit_from_timm_state_dict(state_dict, num_classes=3, num_heads=4)
    assert with_new_head.head.weight.shape == (3, 24) and torch.count_nonzero(with_new_head.head.weight) == 0
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(with_new_head.forward_features(images), with_checkpoint_head.forward_features(images))
        assert torch.count_nonzero(with_new_head(images)) == 0  # zero head: every class starts equal (section 3.2)
    del state_dict["head.weight"], state_dict["head.bias"]  # a headless checkpoint needs a new head
    assert vit_from_timm_state_dict(state_dict, num_classes=3, num_heads=4).head.out_features == 3
    with pytest.raises(ValueError, match=r"no head \(head.weight\): pass num_classes"):
        vit_from_timm_state_dict(state_dict, num_heads=4)


def test_the_number_of_heads_is_asked_for_when_the_width_is_not_a_presets():
    with pytest.raises(ValueError, match=r"D = 24 is none of the presets' .*pass num_heads"):
        vit_from_timm_state_dict(_random_timm_state_dict(32, 8, 1, 24, 40, num_classes=5))


@pytest.mark.parametrize("damage, message", [
    (lambda sd: sd.pop("blocks.1.mlp.fc2.bias"), r'Missing key\(s\) in state_dict: "transformer_encoder.1.mlp_block.mlp.3.bias"'),
    (lambda sd: sd.update({"fc_norm.weight": torch.ones(24)}), r'Unexpected key\(s\) in state_dict: "fc_norm.weight"'),
    (lambda sd: sd.update({"blocks.0.attn.proj.weight": torch.zeros(24, 12)}),
     r"size mismatch for transformer_encoder.0.msa_block.proj.weight: copying a param with shape "
     r"torch.Size\(\[24, 12\]\) from checkpoint, the shape in current model is torch.Size\(\[24, 24\]\)"),
    (lambda sd: sd.update({"pos_embed": torch.zeros(1, 1 + 15, 24)}), "15 patch positions, not a square grid"),
    (lambda sd: sd.pop("cls_token"), "no 'cls_token'"),
])
def test_tensors_that_do_not_fit_are_named(damage, message):
    state_dict = _random_timm_state_dict(32, 8, 2, 24, 40, num_classes=5)
    damage(state_dict)
    with pytest.raises(ValueError, match=message):
        vit_from_timm_state_dict(state_dict, num_heads=4)


# Where the weights live (settings.get_weights_dir)
def test_weights_dir_order_environment_then_repository_then_working_directory(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.WEIGHTS_DIR_ENV, str(tmp_path / "mine"))
    assert settings.get_weights_dir() == tmp_path / "mine"
    assert pretrained.pretrained_weights_path() == tmp_path / "mine" / "vit_tiny_patch16_224.safetensors"
    monkeypatch.delenv(settings.WEIGHTS_DIR_ENV)
    assert settings.get_weights_dir() == settings.get_repository_root() / "weights"
    monkeypatch.setattr(settings, "get_repository_root", lambda: None)
    monkeypatch.chdir(tmp_path)
    assert settings.get_weights_dir() == tmp_path / "weights"


def test_weights_folder_is_ignored_by_git():
    root = settings.get_repository_root()
    assert "weights/" in (root / ".gitignore").read_text().splitlines()


# load_pretrained_vit, on a tiny registry entry so that nothing large is written
TINY_SHAPE = dict(image_size=32, patch_size=8, depth=2, width=24, mlp_size=40, num_classes=5)


@pytest.fixture
def tiny_weights(monkeypatch, tmp_path) -> PretrainedWeights:
    """A registry entry "tiny" for a 2-block ViT, its weights folder an empty temporary one."""
    entry = PretrainedWeights(
        url="https://example.org/tiny/model.safetensors",
        file_name="tiny.safetensors",
        architecture=dict(img_size=32, patch_size=8, num_transformer_layers=2, embedding_dim=24, mlp_size=40,
                          num_heads=4, num_classes=5),
        resize_size=36,
        interpolation=torchvision.transforms.InterpolationMode.BICUBIC,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        source="random tensors made by the test",
    )
    monkeypatch.setitem(pretrained.PRETRAINED_WEIGHTS, "tiny", entry)
    monkeypatch.setenv(settings.WEIGHTS_DIR_ENV, str(tmp_path))
    return entry


class _FakeResponse:
    """Just enough of a streamed requests.Response for common.download.fetch."""

    def __init__(self, body: bytes, status_code: int = 200) -> None:
        self.body, self.status_code = body, status_code
        self.ok, self.reason = status_code < 400, "OK" if status_code < 400 else "Not Found"
        self.headers = {"Content-Length": str(len(body))}

    def iter_content(self, chunk_size: int):
        for start in range(0, len(self.body), chunk_size):
            yield self.body[start:start + chunk_size]

    def __enter__(self) -> "_FakeResponse":
        return self

    def __exit__(self, *exc_info) -> None:
        pass


def _tiny_file_bytes(tmp_path: Path, **shape) -> bytes:
    source = tmp_path / "made_by_the_test.safetensors"
    save_file(_random_timm_state_dict(**{**TINY_SHAPE, **shape}), source)
    body = source.read_bytes()
    source.unlink()
    return body


def test_missing_weights_are_downloaded_once_to_the_weights_dir(tiny_weights, tmp_path, monkeypatch):
    body, urls = _tiny_file_bytes(tmp_path), []
    monkeypatch.setattr(requests, "get", lambda url, **kwargs: urls.append(url) or _FakeResponse(body))
    model, _ = load_pretrained_vit("tiny")
    assert urls == [tiny_weights.url] and (tmp_path / "tiny.safetensors").read_bytes() == body
    assert model.head.out_features == 5 and count(model, trainable_only=True) == 24 * 5 + 5
    load_pretrained_vit("tiny")  # found locally this time
    assert urls == [tiny_weights.url]


@pytest.mark.parametrize("failure", [
    requests.ConnectionError("[Errno -3] Temporary failure in name resolution"),
    _FakeResponse(b"Not Found", status_code=404),
])
def test_offline_without_a_local_copy_says_where_to_put_the_file(tiny_weights, tmp_path, monkeypatch, failure):
    def get(url, **kwargs):
        if isinstance(failure, Exception):
            raise failure
        return failure

    monkeypatch.setattr(requests, "get", get)
    weights_dir = tmp_path / "weights"  # not there yet: a failed download must not leave it behind, empty
    monkeypatch.setenv(settings.WEIGHTS_DIR_ENV, str(weights_dir))
    with pytest.raises(PretrainedWeightsUnavailableError) as info:
        load_pretrained_vit("tiny")
    message = str(info.value)
    assert message.count(tiny_weights.url) == 1 and message.count(str(weights_dir / "tiny.safetensors")) == 1
    assert ("no connection" if isinstance(failure, Exception) else "HTTP status 404") in message
    assert settings.WEIGHTS_DIR_ENV in message and "no fallback to random weights" in message
    assert "\n" not in message and list(tmp_path.iterdir()) == []  # nothing left behind, not even the folder


@pytest.mark.parametrize("make_file, message", [
    (lambda body: body[: len(body) // 2], "not a readable safetensors file"),   # an interrupted copy
    (lambda body: b"<html>Sign in</html>", "not a readable safetensors file"),  # an error page
])
def test_a_damaged_file_is_named_with_what_to_do(tiny_weights, tmp_path, make_file, message):
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(make_file(_tiny_file_bytes(tmp_path)))
    with pytest.raises(PretrainedWeightsFileError, match=message) as info:
        load_pretrained_vit("tiny")
    assert str(path) in str(info.value) and "Delete it" in str(info.value)


def test_a_file_of_another_model_is_named_with_what_is_wrong(tiny_weights, tmp_path):
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(_tiny_file_bytes(tmp_path, depth=3, image_size=40))  # one block more, a 5 x 5 grid
    wrong_grid = (r"size mismatch for position_embedding: copying a param with shape torch.Size\(\[1, 26, 24\]\) "
                  r"from checkpoint, the shape in current model is torch.Size\(\[1, 17, 24\]\)")
    with pytest.raises(PretrainedWeightsFileError, match=wrong_grid) as info:
        load_pretrained_vit("tiny")
    message = str(info.value)
    assert "Unexpected key(s)" in message and '"transformer_encoder.2.msa_block.proj.bias"' in message
    assert str(path) in message and "delete it" in message


def test_unknown_weights_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="Unknown pretrained weights 'vit_zz'. Choose one of: vit_ti_16_augreg"):
        load_pretrained_vit("vit_zz")


def test_vit_ti_transforms_crop_the_centre_224_of_248_and_scale_to_minus_one_one():
    transforms = pretrained.PRETRAINED_WEIGHTS["vit_ti_16_augreg"].transforms()
    assert torch.equal(transforms(Image.new("RGB", (500, 300), "white")), torch.ones(3, 224, 224))
    assert torch.equal(transforms(Image.new("RGB", (300, 400), "black")), -torch.ones(3, 224, 224))
    # A 248-pixel square keeps its size and the crop starts at column 12: of 13 white columns, one stays.
    image = Image.new("RGB", (248, 248), "black")
    image.paste("white", (0, 0, 13, 248))
    tensor = transforms(image)
    assert torch.equal(tensor[:, :, 0], torch.ones(3, 224)) and torch.equal(tensor[:, :, 1:], -torch.ones(3, 224, 223))


def test_imagenet_class_names_come_without_a_download():
    names = pretrained.imagenet_class_names()
    assert len(names) == 1000 and names[963] == "pizza" and names[0] == "tench"


# The shared ViT-Ti/16 weights through load_pretrained_vit
@pytest.fixture(scope="module")
def vit_ti_path() -> Path:
    path = pretrained.pretrained_weights_path("vit_ti_16_augreg")
    if not path.is_file():
        pytest.skip(f"The ViT-Ti/16 weights are not at {path}; .ci/run stages them from ../shared/weights/.")
    return path


def test_shared_weights_see_a_pizza(vit_ti_path):
    image_path = settings.get_data_dir() / "04-pizza-dad.jpeg"
    if not image_path.is_file():
        pytest.skip(f"{image_path} is not there; .ci/run stages it from ../shared/data/.")
    model, transforms = load_pretrained_vit("vit_ti_16_augreg")
    assert not model.training and count(model) == VIT_TI_PARAMETERS
    with torch.no_grad():
        probabilities = model(transforms(load_image(image_path)).unsqueeze(0)).softmax(dim=-1)[0]
    assert pretrained.imagenet_class_names()[int(probabilities.argmax())] == "pizza"
    assert probabilities.max() > 0.5  # the README measured 0.95


def test_shared_weights_at_384_px_interpolate_their_14_x_14_positions_to_24_x_24_and_still_see_the_pizza(vit_ti_path):
    at_224, _ = load_pretrained_vit("vit_ti_16_augreg")
    at_384, _ = load_pretrained_vit("vit_ti_16_augreg", img_size=384)
    assert at_224.position_embedding.shape == (1, 1 + 14 * 14, 192)
    assert at_384.position_embedding.shape == (1, 1 + 24 * 24, 192)
    assert torch.equal(at_384.position_embedding, pretrained.resize_position_embedding(at_224.position_embedding, 24))
    assert torch.equal(at_384.position_embedding[:, 0], at_224.position_embedding[:, 0])  # the class token's row
    resize_and_crop = torchvision.transforms.Compose([  # the weights' own preprocessing, at 384 px
        torchvision.transforms.Resize(384, interpolation=torchvision.transforms.InterpolationMode.BICUBIC),
        torchvision.transforms.CenterCrop(384), torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize(VIT_MEAN, VIT_STD)])
    image_path = settings.get_data_dir() / "04-pizza-dad.jpeg"
    if not image_path.is_file():
        pytest.skip(f"{image_path} is not there; .ci/run stages it from ../shared/data/.")
    with torch.no_grad():
        probabilities = at_384(resize_and_crop(load_image(image_path)).unsqueeze(0)).softmax(dim=-1)[0]
    assert pretrained.imagenet_class_names()[int(probabilities.argmax())] == "pizza"  # 0.97 when measured


def test_shared_weights_with_a_new_head_freeze_the_backbone_unless_asked(vit_ti_path):
    model, _ = load_pretrained_vit("vit_ti_16_augreg", num_classes=3)
    assert model.head.weight.shape == (3, 192) and torch.count_nonzero(model.head.weight) == 0
    assert count(model, trainable_only=True) == 192 * 3 + 3
    unfrozen, _ = load_pretrained_vit("vit_ti_16_augreg", num_classes=3, freeze_backbone=False)
    assert count(unfrozen, trainable_only=True) == count(unfrozen) == VIT_TI_PARAMETERS - 192 * 1000 - 1000 + 579
    assert torch.equal(unfrozen.position_embedding, model.position_embedding)


# Fine-tuning every weight (section 3.2, appendix B.1.1): a new resolution, the weights' own dropout
@pytest.fixture
def tiny_file(tiny_weights, tmp_path) -> dict[str, torch.Tensor]:
    """The tiny entry's weights file (a 4 x 4 grid of 8-pixel patches at 32 px), and its tensors."""
    state_dict = _random_timm_state_dict(**TINY_SHAPE)
    save_file(state_dict, tmp_path / tiny_weights.file_name)
    return state_dict


def test_a_new_resolution_interpolates_the_files_position_embeddings(tiny_file):
    model, transforms = load_pretrained_vit("tiny", num_classes=3, img_size=48)
    assert model.img_size == (48, 48) and model.position_embedding.shape == (1, 1 + 6 * 6, 24)
    assert torch.equal(model.position_embedding, pretrained.resize_position_embedding(tiny_file["pos_embed"], 6))
    assert torch.equal(model.patch_embedding.patcher.weight, tiny_file["patch_embed.proj.weight"])
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 3) and transforms(Image.new("RGB", (40, 40))).shape[-1] == 32
    same, _ = load_pretrained_vit("tiny", img_size=32)
    assert torch.equal(same.position_embedding, tiny_file["pos_embed"])
    with pytest.raises(ValueError, match="divisible by the patch size 8, got 50 x 50"):
        load_pretrained_vit("tiny", img_size=50)


def test_fine_tuning_keeps_the_dropout_the_weights_were_trained_with(tiny_file, tiny_weights):
    model, _ = load_pretrained_vit("tiny", num_classes=3, freeze_backbone=False, img_size=48)
    images = torch.randn(2, 3, 48, 48)
    model.train()
    assert torch.equal(model.forward_features(images), model.forward_features(images))  # dropout 0: no noise
    # The trap: the same weights in create_vit's default dropout of 0.1, which barely learned at 384 px.
    with_default = ViT(**{**tiny_weights.architecture, "img_size": 48, "num_classes": 3})
    with_default.load_state_dict(model.state_dict())
    assert not torch.equal(with_default.forward_features(images), with_default.forward_features(images))


@pytest.mark.parametrize("freeze_backbone", [True, False])
def test_every_parameter_trains_unless_the_backbone_is_frozen(tiny_file, freeze_backbone):
    model, _ = load_pretrained_vit("tiny", num_classes=3, freeze_backbone=freeze_backbone)
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    optimizer = recipe.create_optimizer(model, lr=0.1, weight_decay=0.0, optimizer="sgd")
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    for _ in range(2):  # the zero head passes no gradient back on the first step
        optimizer.zero_grad()
        nn.functional.cross_entropy(model.train()(images), labels).backward()
        optimizer.step()
    changed = {name for name, parameter in model.named_parameters() if not torch.equal(parameter, before[name])}
    assert changed == ({"head.weight", "head.bias"} if freeze_backbone else set(before))


def _colour_folders(root: Path) -> Path:
    """train/, test/ and val/ of 4 photos each, one solid colour per class (red, green)."""
    for split in ("train", "test", "val"):
        for name, colour in (("green", (20, 220, 20)), ("red", (220, 20, 20))):
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40 + i, 40), colour).save(root / split / name / f"{split}{i}.jpg")
    return root


def test_the_finetune_recipe_trains_every_weight_warming_up_then_decaying_by_a_cosine(tiny_file, tmp_path):
    data_dir = _colour_folders(tmp_path / "data")
    results = train.main(["--recipe", "finetune", "--model", "tiny", "--image-size", "48", "--epochs", "3",
                          "--batch-size", "2", "--num-workers", "0", "--data-dir", str(data_dir), "--val-dir",
                          str(data_dir / "val"), "--output-dir", str(tmp_path / "out")])
    peak, warmup, decay = 3e-3, 2, 4  # 2 steps an epoch, one epoch of warmup
    expected = [peak * (k + 1) / (warmup + 1) for k in range(warmup)]
    expected += [peak * (1 + math.cos(math.pi * k / decay)) / 2 for k in range(decay)]
    assert results["steps"]["lr"] == pytest.approx(expected)
    assert results["config"]["optimizer"] == "sgd" and results["config"]["dropout"] is None
    initial = load_pretrained_vit("tiny", num_classes=2, img_size=48)[0].state_dict()
    trained = torch.load(tmp_path / "out" / "tiny.pth", weights_only=True)
    assert trained["position_embedding"].shape == (1, 37, 24)
    assert {name for name in initial if not torch.equal(initial[name], trained[name])} == set(initial)


def _load_finetune_benchmark():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # as when it runs as a script
    return importlib.import_module("finetune")


def test_the_finetune_benchmark_trains_a_frozen_head_per_seed_once(tiny_file, tmp_path, monkeypatch):
    finetune = _load_finetune_benchmark()
    monkeypatch.setattr(finetune, "WEIGHTS", "tiny")
    data_dir = _colour_folders(tmp_path / "data")
    argv = ["--configs", "frozen_224", "--seeds", "0", "1", "--data-dir", str(data_dir), "--val-dir",
            str(data_dir / "val"), "--output-dir", str(tmp_path / "out")]
    table = finetune.main(argv)
    for seed in (0, 1):
        saved = json.loads((tmp_path / "out" / "frozen_224" / f"seed{seed}_results.json").read_text())
        assert len(saved["metrics"]["val_acc"]) == 10 and saved["wall_time_seconds"] >= saved["head_seconds"] > 0
    assert table.splitlines()[2].startswith("| frozen_224 | ") and table.splitlines()[2].endswith(" | 2 |")
    monkeypatch.setattr(features, "extract_features", lambda *args, **kwargs: pytest.fail("trained again"))
    assert finetune.main(argv) == table  # finished seeds are read, not trained again


def test_the_finetune_benchmark_runs_the_recipe_at_each_resolution(tmp_path):
    finetune = _load_finetune_benchmark()
    options, train_flags = finetune.parse_args(["--data-dir", str(tmp_path), "--val-dir", str(tmp_path), "--",
                                                "--lr", "0.01"])
    at_384 = train.parse_args(finetune.finetune_flags("finetune_384", 3, options, train_flags))
    assert (at_384.model, at_384.optimizer, at_384.image_size, at_384.epochs, at_384.warmup_epochs) == (
        "vit_ti_16_augreg", "sgd", 384, 6, 1)
    assert (at_384.lr, at_384.seed, at_384.max_grad_norm, at_384.weight_decay) == (0.01, 3, 1.0, 0.0)
    assert train.parse_args(finetune.finetune_flags("finetune_224", 0, options, [])).image_size == 224


def test_the_real_checkpoint_moves_from_224_to_384_pixels(vit_ti_state_dict):
    model, _ = load_pretrained_vit("vit_ti_16_augreg", num_classes=3, freeze_backbone=False, img_size=384)
    assert vit_ti_state_dict["pos_embed"].shape == (1, 197, 192)
    assert model.position_embedding.shape == (1, 577, 192) and model.grid_size == (24, 24)
    file_positions = vit_ti_state_dict["pos_embed"]
    assert torch.equal(model.position_embedding, pretrained.resize_position_embedding(file_positions, 24))
    assert count(model, trainable_only=True) == count(model) == VIT_TI_PARAMETERS - 1000 * 193 + 579 + 380 * 192
    assert {module.p for module in model.modules() if isinstance(module, nn.Dropout)} == {0.0}
    with torch.no_grad():
        assert model(torch.randn(1, 3, 384, 384)).shape == (1, 3)


def test_the_course_vit_ti_16_feature_extractor_carries_its_preprocessing(vit_ti_path):
    model, transforms = pretrained.vit_ti_16_feature_extractor(num_classes=3)
    assert isinstance(model, ViT) and model.head.out_features == 3
    assert (model.patch_size, model.class_token.shape[-1], len(model.transformer_encoder)) == (16, 192, 12)  # Ti/16
    assert count(model, trainable_only=True) == 192 * 3 + 3  # the backbone is frozen
    assert model.preprocessing is transforms and transforms.transforms[-1].mean == (0.5, 0.5, 0.5)
