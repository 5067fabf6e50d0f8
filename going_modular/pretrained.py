"""Pretrained weights in the course's own ViT: converting other libraries' weights, and loading them.

The paper's results come from pre-training on a large dataset, then fine-tuning (section 3.2). This
module holds everything the course does with weights it did not train itself:

    torchvision  vit_from_torchvision          a torchvision VisionTransformer -> the course's ViT
                 vit_to_torchvision            the course's ViT -> a torchvision VisionTransformer (notebook 06)
                 create_vit_feature_extractor  torchvision's ViT-B/16, backbone frozen, a new head (notebook 06)
    section 3.2  resize_position_embedding     position embeddings interpolated to a new patch grid
    timm         vit_from_timm_state_dict      a timm-layout state dict -> the course's ViT
                 load_pretrained_vit           named weights (``PRETRAINED_WEIGHTS``) and their preprocessing,
                                               from ``settings.get_weights_dir()`` or the model hub
    ImageNet     imagenet_class_names          the names of an ImageNet head's 1000 outputs

The torchvision functions and the weights errors used to live in ``model_builder``, which still
re-exports them (for one release), so older notebooks and learners' code keep working.
"""
from __future__ import annotations

import math
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.transforms import InterpolationMode

from going_modular.common import settings
from going_modular.data_setup import VIT_MEAN, VIT_STD, DownloadError, download_file
from going_modular.model_builder import VIT_PRESETS, ViT
from going_modular.common.shapes import ImageSize, to_pair


class PretrainedWeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be downloaded (usually: no internet)."""


class PretrainedWeightsFileError(ValueError):
    """A weights file that cannot be used: damaged, not a safetensors file, or holding another model's tensors."""


class RandomWeightsWarning(UserWarning):
    """A model that should be pretrained is running with random weights."""


def _copy_parameters(model: nn.Module, theirs: Mapping[str, torch.Tensor], key_map: Mapping[str, str]) -> None:
    """Copy ``theirs[key_map[name]]`` into each parameter ``name`` of ``model``, checking every shape."""
    ours = model.state_dict()
    with torch.no_grad():
        for our_name, their_name in key_map.items():
            if ours[our_name].shape != theirs[their_name].shape:
                raise ValueError(
                    f"Shape mismatch: {our_name} {tuple(ours[our_name].shape)} vs "
                    f"{their_name} {tuple(theirs[their_name].shape)}."
                )
            ours[our_name].copy_(theirs[their_name])


# ------------------------------------------------------------------------------------------ torchvision


def _torchvision_key_map(num_layers: int, has_pre_logits: bool) -> dict[str, str]:
    """Our parameter names -> torchvision's, for every parameter of the model."""
    names = {
        "patch_embedding.patcher.weight": "conv_proj.weight",
        "patch_embedding.patcher.bias": "conv_proj.bias",
        "class_token": "class_token",
        "position_embedding": "encoder.pos_embedding",
        "norm.weight": "encoder.ln.weight",
        "norm.bias": "encoder.ln.bias",
        "head.weight": "heads.head.weight",
        "head.bias": "heads.head.bias",
    }
    if has_pre_logits:
        names.update({"pre_logits.0.weight": "heads.pre_logits.weight", "pre_logits.0.bias": "heads.pre_logits.bias"})
    block_names = {
        "msa_block.layer_norm": "ln_1",
        "msa_block.qkv": "self_attention.in_proj",  # in_proj_weight / in_proj_bias, see below
        "msa_block.proj": "self_attention.out_proj",
        "mlp_block.layer_norm": "ln_2",
        "mlp_block.mlp.0": "mlp.0",
        "mlp_block.mlp.3": "mlp.3",
    }
    for i in range(num_layers):
        for ours, theirs in block_names.items():
            for kind in ("weight", "bias"):
                separator = "_" if ours == "msa_block.qkv" else "."
                names[f"transformer_encoder.{i}.{ours}.{kind}"] = f"encoder.layers.encoder_layer_{i}.{theirs}{separator}{kind}"
    return names


def vit_from_torchvision(tv_model: torchvision.models.VisionTransformer) -> ViT:
    """Return this module's ViT holding the weights of a torchvision VisionTransformer.

    Works for any depth, width, image size, patch size and number of classes; in eval mode both models
    give the same logits (to float32 rounding). With it, torchvision's pretrained ViT-B/16 (and the
    feature extractor of ``create_vit_feature_extractor``) runs inside the ViT the course builds.

    Args:
        tv_model: e.g. ``torchvision.models.vit_b_16(weights=ViT_B_16_Weights.DEFAULT)``.

    Returns:
        A ViT in the same training/eval mode, on the same device and dtype as ``tv_model``.

    Raises:
        TypeError: ``tv_model`` is not a torchvision VisionTransformer.
        ValueError: it uses a convolutional stem (not the paper's equation 1) or a parameter does not fit.
    """
    if not isinstance(tv_model, torchvision.models.VisionTransformer):
        raise TypeError(f"Expected a torchvision.models.VisionTransformer, got {type(tv_model).__name__}.")
    if not isinstance(tv_model.conv_proj, nn.Conv2d):
        raise ValueError("This torchvision ViT uses a convolutional stem (conv_stem_configs), which equation 1 does not have.")
    first_block = tv_model.encoder.layers[0]
    has_pre_logits = hasattr(tv_model.heads, "pre_logits")
    model = ViT(
        img_size=tv_model.image_size,
        in_channels=tv_model.conv_proj.in_channels,
        patch_size=tv_model.patch_size,
        num_transformer_layers=len(tv_model.encoder.layers),
        embedding_dim=tv_model.hidden_dim,
        mlp_size=tv_model.mlp_dim,
        num_heads=first_block.num_heads,
        num_classes=tv_model.heads.head.out_features,
        attn_dropout=tv_model.attention_dropout,
        proj_dropout=tv_model.dropout,
        mlp_dropout=tv_model.dropout,
        embedding_dropout=tv_model.dropout,
        qkv_bias=first_block.self_attention.in_proj_bias is not None,
        representation_size=tv_model.heads.pre_logits.out_features if has_pre_logits else None,
    )
    theirs = tv_model.state_dict()
    key_map = _torchvision_key_map(len(tv_model.encoder.layers), has_pre_logits)
    unmapped = set(theirs) - set(key_map.values())
    if set(key_map) != set(model.state_dict()) or unmapped:
        raise ValueError(f"Parameters that do not map between the two models: {sorted(unmapped)[:5]}")
    _copy_parameters(model, theirs, key_map)
    reference = next(tv_model.parameters())
    return model.to(device=reference.device, dtype=reference.dtype).train(tv_model.training)


def vit_to_torchvision(model: ViT) -> torchvision.models.VisionTransformer:
    """Return a torchvision VisionTransformer holding the weights of the course's ViT (the inverse of
    :func:`vit_from_torchvision`).

    Notebook 06 uses it to run the pretrained ViT-Ti/16, with its trained head, through torchvision's
    independent implementation: in eval mode both give the same logits (to float32 rounding).

    Args:
        model: a ViT of the paper's form: square images, no convolutional stem, class-token pooling, and
            a bias in the query/key/value projection (torchvision's attention always has one).

    Returns:
        A torchvision VisionTransformer with dropout 0 (as the course's pretrained ViTs), in the same
        training/eval mode, on the same device and dtype as ``model``.

    Raises:
        TypeError: ``model`` is not the course's ViT.
        ValueError: the model has a feature torchvision's VisionTransformer lacks (the message names it).
    """
    if not isinstance(model, ViT):
        raise TypeError(f"Expected the course's ViT, got {type(model).__name__}.")
    height, width = model.img_size
    first_block = model.transformer_encoder[0]
    unsupported = {
        f"non-square images ({height} x {width})": height != width,
        "a convolutional stem": not isinstance(model.stem, nn.Identity),
        f'pool="{model.pool}"': model.pool != "cls",
        "qkv_bias=False": first_block.msa_block.qkv.bias is None,
    }
    problems = [name for name, present in unsupported.items() if present]
    if problems:
        raise ValueError(f"torchvision's VisionTransformer has no equivalent of: {', '.join(problems)}.")
    has_pre_logits = isinstance(model.pre_logits, nn.Sequential)
    reference = next(model.parameters())
    tv_model = torchvision.models.VisionTransformer(
        image_size=height,
        patch_size=model.patch_size,
        num_layers=len(model.transformer_encoder),
        num_heads=first_block.msa_block.num_heads,
        hidden_dim=model.class_token.shape[-1],
        mlp_dim=first_block.mlp_block.mlp[0].out_features,
        num_classes=model.head.out_features,
        representation_size=model.pre_logits[0].out_features if has_pre_logits else None,
    )
    key_map = _torchvision_key_map(len(model.transformer_encoder), has_pre_logits)
    ours = model.state_dict()
    _copy_parameters(tv_model, ours, {theirs: our_name for our_name, theirs in key_map.items()})
    return tv_model.to(device=reference.device, dtype=reference.dtype).train(model.training)


def _load_pretrained_vit_b_16(
    weights: torchvision.models.ViT_B_16_Weights, allow_random_weights: bool
) -> tuple[torchvision.models.VisionTransformer, bool]:
    try:
        return torchvision.models.vit_b_16(weights=weights), True
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a truncated file is a RuntimeError
        cache = f"{torch.hub.get_dir()}/checkpoints/{weights.url.rsplit('/', 1)[-1]}"
        message = (
            f"Could not load the pretrained weights {weights} from {weights.url} ({error}). "
            f"The download failed (no internet connection, or the server could not be reached). Either run "
            f"where the internet is reachable (e.g. Colab), "
            f"or download that file elsewhere and put it at {cache}, or, to carry on without transfer "
            f"learning, pass allow_random_weights=True (every result is then from RANDOM weights)."
        )
        if not allow_random_weights:
            raise PretrainedWeightsUnavailableError(message) from error
    warnings.warn(
        "\n" + "!" * 78 + "\nPRETRAINED WEIGHTS UNAVAILABLE: the ViT-B/16 backbone has RANDOM weights.\n"
        "Nothing trained on top of it is a transfer-learning result.\n" + message + "\n" + "!" * 78,
        RandomWeightsWarning,
        stacklevel=3,
    )
    # The same architecture as the weights would have given: SWAG's weights are for 384 x 384 images.
    return torchvision.models.vit_b_16(weights=None, image_size=weights.meta["min_size"][0]), False


def create_vit_feature_extractor(
    num_classes: int,
    weights: Union[str, torchvision.models.ViT_B_16_Weights, None] = "DEFAULT",
    device: Union[str, torch.device, None] = None,
    allow_random_weights: bool = False,
) -> tuple[torchvision.models.VisionTransformer, nn.Module]:
    """torchvision's ViT-B/16 with pretrained weights, backbone frozen, and a new trainable head.

    Args:
        num_classes: outputs of the new, zero-initialised head (3 for pizza, steak, sushi: 768 * 3 + 3 = 2,307
            parameters).
        weights: a ``ViT_B_16_Weights`` member or its name ("DEFAULT", "IMAGENET1K_V1", ...); None
            builds random weights on purpose.
        device: where to put the model (default: leave it on the CPU).
        allow_random_weights: if the weights cannot be downloaded, continue with random weights and a
            ``RandomWeightsWarning`` instead of raising. Off by default: never silently.

    Returns:
        ``(model, transforms)``: the model (its attribute ``pretrained`` says whether the weights
        loaded) and the preprocessing the weights were trained with (``weights.transforms()``).

    Raises:
        PretrainedWeightsUnavailableError: the weights could not be downloaded and
            ``allow_random_weights`` is False. The message says what to do.
    """
    weights = torchvision.models.ViT_B_16_Weights.verify(weights)
    if weights is None:
        model, pretrained = torchvision.models.vit_b_16(weights=None), False
    else:
        model, pretrained = _load_pretrained_vit_b_16(weights, allow_random_weights)
    model.requires_grad_(False)
    # Same layout as torchvision's own head, so vit_from_torchvision can convert the result; zero-initialised
    # as the paper's fine-tuning head (section 3.2).
    model.heads = nn.Sequential(OrderedDict(head=nn.Linear(model.hidden_dim, num_classes)))
    nn.init.zeros_(model.heads.head.weight)
    nn.init.zeros_(model.heads.head.bias)
    model.num_classes = num_classes
    model.pretrained = pretrained
    transforms = (weights or torchvision.models.ViT_B_16_Weights.DEFAULT).transforms()
    return (model.to(device) if device is not None else model), transforms


# ------------------------------------------------------------------------------------------ section 3.2


def resize_position_embedding(position_embedding: torch.Tensor, grid_size: ImageSize) -> torch.Tensor:
    """Resize learned position embeddings to a new patch grid, as in the paper's section 3.2.

    "We therefore perform 2D interpolation of the pre-trained position embeddings, according to their
    location in the original image": the patch positions are laid out on their square grid and resized
    bicubically; the class token's embedding is kept as it is. Used to fine-tune at a higher resolution
    (224 -> 384 pixels with P = 16 is a 14 x 14 -> 24 x 24 grid).

    Args:
        position_embedding: [1, 1 + N, D], the class token's position first (``ViT.position_embedding``).
        grid_size: the new grid (rows, columns) of patches, or one int for a square grid.

    Returns:
        [1, 1 + rows * columns, D]; the input itself when the grid is unchanged.

    Raises:
        ValueError: the input is not [1, 1 + N, D] with N a square number, or ``grid_size`` is not positive.
    """
    rows, columns = to_pair(grid_size, name="grid_size")
    if position_embedding.dim() != 3 or position_embedding.shape[0] != 1:
        raise ValueError(f"Expected a position embedding of shape [1, 1 + N, D], got {tuple(position_embedding.shape)}.")
    class_position, patch_positions = position_embedding[:, :1], position_embedding[:, 1:]
    old_side = math.isqrt(patch_positions.shape[1])
    if old_side * old_side != patch_positions.shape[1]:
        raise ValueError(f"The {patch_positions.shape[1]} patch positions do not form a square grid.")
    if (old_side, old_side) == (rows, columns):
        return position_embedding
    grid = patch_positions.reshape(1, old_side, old_side, -1).permute(0, 3, 1, 2)  # [1, D, side, side]
    grid = F.interpolate(grid, size=(rows, columns), mode="bicubic", align_corners=False)
    patch_positions = grid.permute(0, 2, 3, 1).reshape(1, rows * columns, -1)
    return torch.cat((class_position, patch_positions), dim=1)


# ------------------------------------------------------------------------------------------------- timm


def _timm_key_map(num_layers: int, qkv_bias: bool, with_head: bool) -> dict[str, str]:
    """Our parameter names -> timm's, for every parameter of a plain ViT (timm's ``vision_transformer.py``)."""
    names = {
        "patch_embedding.patcher.weight": "patch_embed.proj.weight",
        "patch_embedding.patcher.bias": "patch_embed.proj.bias",
        "class_token": "cls_token",
        "position_embedding": "pos_embed",
        "norm.weight": "norm.weight",
        "norm.bias": "norm.bias",
    }
    if with_head:
        names.update({"head.weight": "head.weight", "head.bias": "head.bias"})
    block_names = {
        "msa_block.layer_norm": "norm1",
        "msa_block.qkv": "attn.qkv",  # both: one Linear to 3D outputs, q, then k, then v
        "msa_block.proj": "attn.proj",
        "mlp_block.layer_norm": "norm2",
        "mlp_block.mlp.0": "mlp.fc1",
        "mlp_block.mlp.3": "mlp.fc2",
    }
    for i in range(num_layers):
        for ours, theirs in block_names.items():
            for kind in ("weight", "bias"):
                if not (ours == "msa_block.qkv" and kind == "bias" and not qkv_bias):
                    names[f"transformer_encoder.{i}.{ours}.{kind}"] = f"blocks.{i}.{theirs}.{kind}"
    return names


# timm's state dicts do not store the number of heads: it changes no tensor's shape. By default a width
# D gets the heads of the Table 1 (or DeiT) preset of that width: 192 -> 3, 384 -> 6, 768 -> 12, 1024 and 1280 -> 16.
_NUM_HEADS_BY_WIDTH = {preset["embedding_dim"]: preset["num_heads"] for preset in VIT_PRESETS.values()}


def _timm_tensor(state_dict: Mapping[str, torch.Tensor], name: str, ndim: int) -> torch.Tensor:
    tensor = state_dict.get(name)
    if tensor is None:
        raise ValueError(
            f"The state dict has no {name!r}, so it is not a ViT in timm's layout "
            f"(its first keys: {sorted(state_dict)[:5]})."
        )
    if tensor.ndim != ndim:
        raise ValueError(f"{name} should have {ndim} dimensions, got shape {tuple(tensor.shape)}.")
    return tensor


def _timm_architecture(state_dict: Mapping[str, torch.Tensor], num_heads: Optional[int]) -> dict[str, int]:
    """The ``ViT`` keyword arguments (all but the head) that fit the tensors of a timm-layout state dict."""
    embedding_dim = _timm_tensor(state_dict, "cls_token", ndim=3).shape[-1]
    _, in_channels, patch_size, _ = _timm_tensor(state_dict, "patch_embed.proj.weight", ndim=4).shape
    num_positions = _timm_tensor(state_dict, "pos_embed", ndim=3).shape[1] - 1  # the class token's comes first
    side = math.isqrt(num_positions)
    if side * side != num_positions:
        raise ValueError(
            f"pos_embed holds {num_positions} patch positions, not a square grid, so the image size cannot be "
            f"inferred (only square images are supported)."
        )
    layers = sorted({int(match[1]) for key in state_dict if (match := re.match(r"blocks\.(\d+)\.", key))})
    if not layers or layers != list(range(len(layers))):
        raise ValueError(f"Expected encoder blocks numbered 0, 1, 2, ... (blocks.0.*), found block numbers {layers}.")
    if num_heads is None:
        if embedding_dim not in _NUM_HEADS_BY_WIDTH:
            raise ValueError(
                f"timm's state dicts do not store the number of heads, and width D = {embedding_dim} is none of "
                f"the presets' ({sorted(_NUM_HEADS_BY_WIDTH)}): pass num_heads (a divisor of {embedding_dim})."
            )
        num_heads = _NUM_HEADS_BY_WIDTH[embedding_dim]
    return dict(
        img_size=side * patch_size,
        in_channels=in_channels,
        patch_size=patch_size,
        num_transformer_layers=len(layers),
        embedding_dim=embedding_dim,
        mlp_size=_timm_tensor(state_dict, "blocks.0.mlp.fc1.weight", ndim=2).shape[0],
        num_heads=num_heads,
        qkv_bias="blocks.0.attn.qkv.bias" in state_dict,
    )


def vit_from_timm_state_dict(
    state_dict: Mapping[str, torch.Tensor], num_classes: Optional[int] = None, num_heads: Optional[int] = None
) -> ViT:
    """Build the course's ViT from the weights of a ViT saved in timm's layout (e.g. a model hub file).

    timm names the parts of equations 1-4 ``patch_embed.proj`` (E), ``cls_token`` (x_class), ``pos_embed``
    (E_pos), ``blocks.{i}.norm1 / attn.qkv / attn.proj`` (equation 2), ``blocks.{i}.norm2 / mlp.fc1 /
    mlp.fc2`` (equation 3), ``norm`` (equation 4's LN) and ``head``. Every size is read off the tensors:
    D and C and P from the patch projection, the image size from the (square) grid of ``pos_embed``, L
    from the blocks, the MLP size from ``fc1``, the classes from ``head``. With the same tensors the model
    gives the same logits as torchvision's ``VisionTransformer`` (tested to 1e-5).

    Args:
        state_dict: tensor name -> tensor, as ``safetensors.torch.load_file`` returns it; any float dtype
            (copied into float32).
        num_classes: None keeps the checkpoint's head (1000 ImageNet classes, say). A number replaces it
            with a new zero-initialised head of that many outputs, as the paper does for fine-tuning:
            "we remove the pre-trained prediction head and attach a zero-initialized D x K feedforward
            layer" (section 3.2).
        num_heads: heads of every MSA block, which the tensors do not determine. None takes those of the
            preset of the same width D (192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, see ``VIT_PRESETS``).

    Returns:
        A ``ViT`` in eval mode, every dropout 0, on the CPU.

    Raises:
        ValueError: a tensor is missing, left over (a variant this ViT does not have, e.g. timm's
            ``fc_norm`` or ``reg_token``) or of the wrong shape, the message naming it; D is not a preset's
            width and ``num_heads`` is None; there is no head and ``num_classes`` is None.
    """
    architecture = _timm_architecture(state_dict, num_heads)
    keep_head = num_classes is None
    if keep_head:
        if "head.weight" not in state_dict:
            raise ValueError("The state dict has no head (head.weight): pass num_classes to attach a new, zero one.")
        num_classes = _timm_tensor(state_dict, "head.weight", ndim=2).shape[0]
    model = ViT(**architecture, num_classes=num_classes, attn_dropout=0.0, proj_dropout=0.0, mlp_dropout=0.0,
                embedding_dropout=0.0)
    key_map = _timm_key_map(architecture["num_transformer_layers"], architecture["qkv_bias"], with_head=keep_head)
    replaced_head = set() if keep_head else {"head.weight", "head.bias"}
    missing = sorted(set(key_map.values()) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(key_map.values()) - replaced_head)
    if missing or unexpected:
        raise ValueError(
            f"The state dict does not fit the paper's ViT ({architecture['num_transformer_layers']} blocks, "
            f"D = {architecture['embedding_dim']}): missing {missing[:5]}, unexpected {unexpected[:5]} "
            f"({len(missing)} and {len(unexpected)} in all)."
        )
    _copy_parameters(model, state_dict, key_map)
    return model.eval()


# ----------------------------------------------------------------------------------- named weights


@dataclass(frozen=True)
class PretrainedWeights:
    """One set of pretrained weights: where it comes from, the ViT it fits, the preprocessing it expects.

    Attributes:
        url: where to download the file (safetensors, timm's layout).
        file_name: its name inside ``settings.get_weights_dir()``.
        architecture: the ``ViT`` keyword arguments its tensors must fit (checked when loading).
        resize_size: the shorter side of an image is resized to this, then the centre is cropped.
        interpolation: how the resize interpolates.
        mean: per-channel mean subtracted after scaling pixels to [0, 1].
        std: per-channel standard deviation divided by.
        source: one line saying where the weights come from, to show beside results made with them.
    """

    url: str
    file_name: str
    architecture: Mapping[str, int]
    resize_size: int
    interpolation: InterpolationMode
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str

    @property
    def image_size(self) -> int:
        return self.architecture["img_size"]

    @property
    def num_classes(self) -> int:
        return self.architecture["num_classes"]

    def transforms(self) -> torchvision.transforms.Compose:
        """The preprocessing the weights were trained with: a PIL image -> a normalised [3, size, size] tensor."""
        steps = torchvision.transforms
        return steps.Compose([
            steps.Resize(self.resize_size, interpolation=self.interpolation, antialias=True),
            steps.CenterCrop(self.image_size),
            steps.ToTensor(),
            steps.Normalize(self.mean, self.std),
        ])


# Adding weights is adding one entry. The hub file's checksum is not pinned: what loads is checked instead.
PRETRAINED_WEIGHTS: dict[str, PretrainedWeights] = {
    "vit_ti_16_augreg": PretrainedWeights(
        url="https://huggingface.co/timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k/resolve/main/model.safetensors",
        file_name="vit_tiny_patch16_224.safetensors",
        architecture={**VIT_PRESETS["vit_ti_16"], "img_size": 224, "num_classes": 1000},
        resize_size=248,  # timm's crop fraction 0.9: 224 / 0.9, rounded down
        interpolation=InterpolationMode.BICUBIC,
        mean=VIT_MEAN,
        std=VIT_STD,
        source=(
            "ViT-Ti/16 AugReg (Steiner et al., 2021): ImageNet-21k pre-training, ImageNet-1k fine-tuning; "
            "Google, Apache-2.0; timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"
        ),
    ),
}


def _pretrained_entry(name: str) -> PretrainedWeights:
    if name not in PRETRAINED_WEIGHTS:
        raise ValueError(f"Unknown pretrained weights {name!r}. Choose one of: {', '.join(PRETRAINED_WEIGHTS)}.")
    return PRETRAINED_WEIGHTS[name]


def pretrained_weights_path(name: str = "vit_ti_16_augreg") -> Path:
    """Where ``load_pretrained_vit`` looks for the named weights, and downloads them to when they are missing.

    The folder is ``settings.get_weights_dir()``: the environment variable ``VIT_COURSE_WEIGHTS_DIR``,
    else the repository's own (git-ignored) ``weights/``, else ``./weights``.

    Raises:
        ValueError: ``name`` is not a key of ``PRETRAINED_WEIGHTS``.
    """
    return settings.get_weights_dir() / _pretrained_entry(name).file_name


def _local_or_downloaded(name: str, entry: PretrainedWeights) -> Path:
    path = pretrained_weights_path(name)
    if path.is_file():
        return path
    try:
        return download_file(entry.url, path)
    except (ConnectionError, DownloadError) as error:
        raise PretrainedWeightsUnavailableError(
            f"The pretrained weights {name!r} are not on this machine and could not be downloaded ({error}). "
            f"Either run where the internet is reachable (e.g. Colab), or download {entry.url} with a browser "
            f"and save it as {path}, or set {settings.WEIGHTS_DIR_ENV} to a folder that holds {entry.file_name}. "
            f"There is no fallback to random weights."
        ) from error


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError  # here, so the rest of the module works without safetensors
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as error:
        raise PretrainedWeightsFileError(
            f"{path} is not a readable safetensors file ({error}); it is probably damaged or an incomplete "
            f"download. Delete it and load again to download a fresh copy."
        ) from error


def _check_tensors(state_dict: Mapping[str, torch.Tensor], entry: PretrainedWeights, path: Path) -> None:
    """Check that the file holds exactly the tensors, by name and shape, of the architecture it should fit."""
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        reference = ViT(**entry.architecture)
    qkv_bias = entry.architecture.get("qkv_bias", True)
    key_map = _timm_key_map(len(reference.transformer_encoder), qkv_bias, with_head=True)
    expected = {key_map[name]: tuple(tensor.shape) for name, tensor in reference.state_dict().items()}
    found = {name: tuple(tensor.shape) for name, tensor in state_dict.items()}
    problems = [f"{name} has shape {found[name]}, expected {shape}"
                for name, shape in expected.items() if name in found and found[name] != shape]
    problems += [f"missing {name}" for name in sorted(expected.keys() - found.keys())]
    problems += [f"unexpected {name}" for name in sorted(found.keys() - expected.keys())]
    if problems:
        raise PretrainedWeightsFileError(
            f"{path} does not hold the tensors of {dict(entry.architecture)} in timm's layout: "
            f"{'; '.join(problems[:5])} ({len(problems)} problems in all). It may be another model's file or "
            f"a damaged download: delete it and load again to download a fresh copy."
        )


def load_pretrained_vit(
    name: str = "vit_ti_16_augreg",
    num_classes: Optional[int] = None,
    device: Union[str, torch.device, None] = None,
    freeze_backbone: bool = True,
) -> tuple[ViT, torchvision.transforms.Compose]:
    """The course's ViT holding named pretrained weights, and the preprocessing those weights expect.

    The file is taken from ``pretrained_weights_path(name)`` and, when it is not there, downloaded there
    from the model hub (with a progress bar; atomically, so an interrupted download leaves nothing).
    Before anything is built, its tensor names and shapes are checked against the registry's
    architecture. It never falls back to random weights.

    Args:
        name: a key of ``PRETRAINED_WEIGHTS`` ("vit_ti_16_augreg").
        num_classes: None keeps the pretrained head: 1000 ImageNet classes, named by
            ``imagenet_class_names()``. A number attaches a new zero-initialised head with that many
            outputs (the paper's section 3.2).
        device: where to put the model (default: the CPU).
        freeze_backbone: True (the default) freezes every parameter but the head's, the feature extractor
            of notebook 06 (ViT-Ti with 3 classes trains 192 * 3 + 3 = 579 parameters); False leaves every
            parameter trainable, to fine-tune the whole model as the paper does.

    Returns:
        ``(model, transforms)``: the model in eval mode, and a transform from a PIL image to its input
        (for "vit_ti_16_augreg": bicubic resize to 248, centre crop 224, mean = std = 0.5).

    Raises:
        ValueError: ``name`` is not a key of ``PRETRAINED_WEIGHTS``.
        PretrainedWeightsUnavailableError: no local file and the download failed; the message names the
            URL, the path to put the file at and the environment variable.
        PretrainedWeightsFileError: the file is damaged, not safetensors, or holds other tensors; the
            message names the file and says to delete it.
    """
    entry = _pretrained_entry(name)
    path = _local_or_downloaded(name, entry)
    state_dict = _read_weights(path)
    _check_tensors(state_dict, entry, path)
    model = vit_from_timm_state_dict(state_dict, num_classes=num_classes, num_heads=entry.architecture["num_heads"])
    model.requires_grad_(not freeze_backbone)
    model.head.requires_grad_(True)
    return (model.to(device) if device is not None else model), entry.transforms()


def imagenet_class_names() -> list[str]:
    """The names of the 1000 ImageNet classes, in the order of a pretrained head's outputs ("pizza" is 963).

    Read from torchvision's weights metadata (``ViT_B_16_Weights.IMAGENET1K_V1.meta["categories"]``):
    nothing is downloaded.
    """
    return list(torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1.meta["categories"])
