"""Pretrained weights in the course's own ViT (section 3.2): torchvision's converted both ways, timm-layout files
loaded by name (``PRETRAINED_WEIGHTS``) at any resolution, position embeddings interpolated to a new patch grid."""
from __future__ import annotations

import math
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.transforms import InterpolationMode

from going_modular.common import settings
from going_modular.common.download import DownloadError, download_file
from going_modular.common.shapes import ImageSize, to_pair
from going_modular.data_setup import VIT_MEAN, VIT_STD
from going_modular.model_builder import VIT_PRESETS, ViT


class PretrainedWeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be downloaded (usually: no internet)."""


class PretrainedWeightsFileError(ValueError):
    """A weights file that cannot be used: damaged, not a safetensors file, or holding another model's tensors."""


class RandomWeightsWarning(UserWarning):
    """A model that should be pretrained is running with random weights."""


def _rename(state_dict: Mapping[str, torch.Tensor], names: Sequence[tuple[str, str]],
            reverse: bool = False) -> dict[str, torch.Tensor]:
    """Rename each key from a pair's first prefix to its second (second to first if ``reverse``); "{}" is a block
    number. Other keys stay, for ``load_state_dict(strict=True)`` to report."""
    rules = [(re.compile(re.escape(old).replace(r"\{\}", r"(\d+)")), new)
             for old, new in (((b, a) for a, b in names) if reverse else names)]
    renamed = {}
    for key, tensor in state_dict.items():
        for pattern, new in rules:
            if match := pattern.match(key):
                key = new.format(*match.groups()) + key[match.end():]
                break
        renamed[key] = tensor
    return renamed


# (ours, torchvision's) name prefixes; torchvision's attention keeps q, k and v in one in_proj_weight, as our qkv.
_TORCHVISION_NAMES = [
    ("patch_embedding.patcher.", "conv_proj."),
    ("class_token", "class_token"),
    ("position_embedding", "encoder.pos_embedding"),
    ("norm.", "encoder.ln."),
    ("pre_logits.0.", "heads.pre_logits."),
    ("head.", "heads.head."),
    ("transformer_encoder.{}.msa_block.layer_norm.", "encoder.layers.encoder_layer_{}.ln_1."),
    ("transformer_encoder.{}.msa_block.qkv.", "encoder.layers.encoder_layer_{}.self_attention.in_proj_"),
    ("transformer_encoder.{}.msa_block.proj.", "encoder.layers.encoder_layer_{}.self_attention.out_proj."),
    ("transformer_encoder.{}.mlp_block.layer_norm.", "encoder.layers.encoder_layer_{}.ln_2."),
    ("transformer_encoder.{}.mlp_block.mlp.0.", "encoder.layers.encoder_layer_{}.mlp.0."),
    ("transformer_encoder.{}.mlp_block.mlp.3.", "encoder.layers.encoder_layer_{}.mlp.3."),
]


def vit_from_torchvision(tv_model: torchvision.models.VisionTransformer) -> ViT:
    """The course's ViT with a torchvision VisionTransformer's weights (any size, e.g. ``vit_b_16(weights="DEFAULT")``),
    mode, device and dtype: the same logits in eval mode.

    Raises:
        TypeError: ``tv_model`` is not a torchvision VisionTransformer.
        ValueError: it uses a convolutional stem (not the paper's equation 1) or a parameter does not fit.
    """
    if not isinstance(tv_model, torchvision.models.VisionTransformer):
        raise TypeError(f"Expected a torchvision.models.VisionTransformer, got {type(tv_model).__name__}.")
    if not isinstance(tv_model.conv_proj, nn.Conv2d):
        raise ValueError("This torchvision ViT has a convolutional stem (conv_stem_configs), unlike equation 1.")
    first_block = tv_model.encoder.layers[0]
    model = ViT(
        img_size=tv_model.image_size, in_channels=tv_model.conv_proj.in_channels, patch_size=tv_model.patch_size,
        num_transformer_layers=len(tv_model.encoder.layers), embedding_dim=tv_model.hidden_dim,
        mlp_size=tv_model.mlp_dim, num_heads=first_block.num_heads, num_classes=tv_model.heads.head.out_features,
        attn_dropout=tv_model.attention_dropout, proj_dropout=tv_model.dropout, mlp_dropout=tv_model.dropout,
        embedding_dropout=tv_model.dropout, qkv_bias=first_block.self_attention.in_proj_bias is not None,
        representation_size=tv_model.heads.pre_logits.out_features if hasattr(tv_model.heads, "pre_logits") else None,
    )
    try:
        model.load_state_dict(_rename(tv_model.state_dict(), _TORCHVISION_NAMES, reverse=True), strict=True)
    except RuntimeError as error:
        raise ValueError(f"This torchvision ViT's parameters do not map onto the course's ViT: {error}") from error
    reference = next(tv_model.parameters())
    return model.to(device=reference.device, dtype=reference.dtype).train(tv_model.training)


def vit_to_torchvision(model: ViT) -> torchvision.models.VisionTransformer:
    """The inverse of ``vit_from_torchvision``: a torchvision VisionTransformer (dropout 0) with the course's ViT's
    weights, mode, device and dtype (notebook 06 checks ViT-Ti/16 against it).

    Raises:
        TypeError: ``model`` is not the course's ViT.
        ValueError: the model has a feature torchvision's VisionTransformer lacks; the message names it.
    """
    if not isinstance(model, ViT):
        raise TypeError(f"Expected the course's ViT, got {type(model).__name__}.")
    height, width = model.img_size
    first_block = model.transformer_encoder[0]
    problems = [name for name, present in {
        f"non-square images ({height} x {width})": height != width,
        "a convolutional stem": not isinstance(model.stem, nn.Identity),
        f'pool="{model.pool}"': model.pool != "cls",
        "qkv_bias=False": first_block.msa_block.qkv.bias is None,
    }.items() if present]
    if problems:
        raise ValueError(f"torchvision's VisionTransformer has no equivalent of: {', '.join(problems)}.")
    tv_model = torchvision.models.VisionTransformer(
        image_size=height, patch_size=model.patch_size, num_layers=len(model.transformer_encoder),
        num_heads=first_block.msa_block.num_heads, hidden_dim=model.class_token.shape[-1],
        mlp_dim=first_block.mlp_block.mlp[0].out_features, num_classes=model.head.out_features,
        representation_size=model.pre_logits[0].out_features if isinstance(model.pre_logits, nn.Sequential) else None,
    )
    tv_model.load_state_dict(_rename(model.state_dict(), _TORCHVISION_NAMES), strict=True)
    reference = next(model.parameters())
    return tv_model.to(device=reference.device, dtype=reference.dtype).train(model.training)


def torchvision_vit_b_16_feature_extractor(
    num_classes: int, weights: Union[str, torchvision.models.ViT_B_16_Weights, None] = "DEFAULT",
    device: Union[str, torch.device, None] = None, allow_random_weights: bool = False,
) -> tuple[torchvision.models.VisionTransformer, nn.Module]:
    """``(model, transforms)``: **torchvision's** ViT-B/16 (86 M parameters, the ZTM chapter's feature extractor) with
    ``weights`` (a ``ViT_B_16_Weights`` or its name; None: random), backbone frozen, a new zero-initialised head (3
    classes: 2,307 parameters), and the weights' preprocessing, also ``model.preprocessing``. ``model.pretrained``
    says whether the weights loaded; ``allow_random_weights`` carries on without them, with a ``RandomWeightsWarning``.
    PretrainedWeightsUnavailableError when the download failed and ``allow_random_weights`` is False."""
    weights = torchvision.models.ViT_B_16_Weights.verify(weights)
    pretrained = weights is not None
    try:
        model = torchvision.models.vit_b_16(weights=weights)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a truncated file is a RuntimeError
        cache = f"{torch.hub.get_dir()}/checkpoints/{weights.url.rsplit('/', 1)[-1]}"
        message = (f"Could not load the pretrained weights {weights} from {weights.url} ({error}): no internet "
                   f"connection, or the server could not be reached. Run where the internet is reachable (e.g. Colab), "
                   f"or download that file elsewhere and put it at {cache}, or, to carry on without transfer learning, "
                   f"pass allow_random_weights=True (every result is then from RANDOM weights).")
        if not allow_random_weights:
            raise PretrainedWeightsUnavailableError(message) from error
        warnings.warn("\n" + "!" * 78 + "\nPRETRAINED WEIGHTS UNAVAILABLE: the ViT-B/16 backbone has RANDOM weights.\n"
                      "Nothing trained on top of it is a transfer-learning result.\n" + message + "\n" + "!" * 78,
                      RandomWeightsWarning, stacklevel=2)
        # The architecture the weights would have given: SWAG's weights are for 384 x 384 images.
        model, pretrained = torchvision.models.vit_b_16(image_size=weights.meta["min_size"][0]), False
    model.requires_grad_(False)
    # torchvision's own head layout, so vit_from_torchvision converts the result; zero as the paper's (section 3.2).
    model.heads = nn.Sequential(OrderedDict(head=nn.Linear(model.hidden_dim, num_classes)))
    nn.init.zeros_(model.heads.head.weight)
    nn.init.zeros_(model.heads.head.bias)
    model.num_classes, model.pretrained = num_classes, pretrained
    model.preprocessing = transforms = (weights or torchvision.models.ViT_B_16_Weights.DEFAULT).transforms()
    return model.to(device), transforms


create_vit_feature_extractor = torchvision_vit_b_16_feature_extractor  # its first name, kept for code that uses it


def resize_position_embedding(position_embedding: torch.Tensor, grid_size: ImageSize) -> torch.Tensor:
    """Resize learned position embeddings [1, 1 + N, D] to [1, 1 + rows * columns, D] (the input itself when the
    grid is unchanged), section 3.2: "we perform 2D interpolation of the pre-trained position embeddings, according
    to their location in the original image" (bicubic; the class token's is kept). ValueError unless the input is
    [1, 1 + N, D] with N a square number and ``grid_size`` is positive."""
    rows, columns = to_pair(grid_size, name="grid_size")
    if position_embedding.dim() != 3 or position_embedding.shape[0] != 1:
        raise ValueError(f"Expected a position embedding shaped [1, 1 + N, D], got {tuple(position_embedding.shape)}.")
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


# (ours, timm's) name prefixes (timm's vision_transformer.py); norm.* and head.* are named alike.
_TIMM_NAMES = [
    ("patch_embedding.patcher.", "patch_embed.proj."),
    ("class_token", "cls_token"),
    ("position_embedding", "pos_embed"),
    ("transformer_encoder.{}.msa_block.layer_norm.", "blocks.{}.norm1."),
    ("transformer_encoder.{}.msa_block.qkv.", "blocks.{}.attn.qkv."),  # both: one Linear to 3D outputs, q, k, v
    ("transformer_encoder.{}.msa_block.proj.", "blocks.{}.attn.proj."),
    ("transformer_encoder.{}.mlp_block.layer_norm.", "blocks.{}.norm2."),
    ("transformer_encoder.{}.mlp_block.mlp.0.", "blocks.{}.mlp.fc1."),
    ("transformer_encoder.{}.mlp_block.mlp.3.", "blocks.{}.mlp.fc2."),
]
_NO_DROPOUT = dict(attn_dropout=0.0, proj_dropout=0.0, mlp_dropout=0.0, embedding_dropout=0.0)
# The number of heads changes no tensor's shape, so timm does not store it: a width D gets its preset's heads.
_NUM_HEADS_BY_WIDTH = {preset["embedding_dim"]: preset["num_heads"] for preset in VIT_PRESETS.values()}


def _timm_tensor(state_dict: Mapping[str, torch.Tensor], name: str, ndim: int) -> torch.Tensor:
    tensor = state_dict.get(name)
    if tensor is None:
        raise ValueError(f"The state dict has no {name!r}, so it is not a ViT in timm's layout "
                         f"(its first keys: {sorted(state_dict)[:5]}).")
    if tensor.ndim != ndim:
        raise ValueError(f"{name} should have {ndim} dimensions, got shape {tuple(tensor.shape)}.")
    return tensor


def _load_timm(model: ViT, state_dict: Mapping[str, torch.Tensor], keep_head: bool) -> None:
    """Load timm-layout tensors strictly (RuntimeError naming misfits), the model's own head unless ``keep_head``."""
    renamed = _rename(state_dict, _TIMM_NAMES, reverse=True)
    if not keep_head:
        renamed = {name: tensor for name, tensor in renamed.items() if not name.startswith("head.")}
        renamed.update({name: tensor for name, tensor in model.state_dict().items() if name.startswith("head.")})
    model.load_state_dict(renamed, strict=True)


def vit_from_timm_state_dict(state_dict: Mapping[str, torch.Tensor], num_classes: Optional[int] = None,
                             num_heads: Optional[int] = None) -> ViT:
    """The course's ViT (eval mode, dropout 0, on the CPU) from tensors in timm's layout (``_TIMM_NAMES``), every
    size read off them but ``num_heads`` (None: those of the ``VIT_PRESETS`` preset of the same width D);
    ``num_classes`` None keeps the checkpoint's head, a number attaches a new zero-initialised one (section 3.2).
    ValueError when a tensor is missing, left over (e.g. timm's ``fc_norm``) or mis-shaped, the message naming it;
    when D is not a preset's width and ``num_heads`` is None; when there is no head and ``num_classes`` is None."""
    embedding_dim = _timm_tensor(state_dict, "cls_token", ndim=3).shape[-1]
    _, in_channels, patch_size, _ = _timm_tensor(state_dict, "patch_embed.proj.weight", ndim=4).shape
    num_positions = _timm_tensor(state_dict, "pos_embed", ndim=3).shape[1] - 1  # the class token's comes first
    side = math.isqrt(num_positions)
    if side * side != num_positions:
        raise ValueError(f"pos_embed holds {num_positions} patch positions, not a square grid, so the image size "
                         f"cannot be inferred (only square images are supported).")
    layers = sorted({int(match[1]) for key in state_dict if (match := re.match(r"blocks\.(\d+)\.", key))})
    if not layers or layers != list(range(len(layers))):
        raise ValueError(f"Expected encoder blocks numbered 0, 1, 2, ... (blocks.0.*), found block numbers {layers}.")
    if num_heads is None and embedding_dim not in _NUM_HEADS_BY_WIDTH:
        raise ValueError(f"timm's state dicts do not store the number of heads, and D = {embedding_dim} is none of "
                         f"the presets' ({sorted(_NUM_HEADS_BY_WIDTH)}): pass num_heads (a divisor of D).")
    mlp_size = _timm_tensor(state_dict, "blocks.0.mlp.fc1.weight", ndim=2).shape[0]
    keep_head = num_classes is None
    if keep_head:
        if "head.weight" not in state_dict:
            raise ValueError("The state dict has no head (head.weight): pass num_classes to attach a new, zero one.")
        num_classes = _timm_tensor(state_dict, "head.weight", ndim=2).shape[0]
    model = ViT(img_size=side * patch_size, in_channels=in_channels, patch_size=patch_size,
                num_transformer_layers=len(layers), embedding_dim=embedding_dim, mlp_size=mlp_size,
                num_heads=num_heads or _NUM_HEADS_BY_WIDTH[embedding_dim], num_classes=num_classes,
                qkv_bias="blocks.0.attn.qkv.bias" in state_dict, **_NO_DROPOUT)
    try:
        _load_timm(model, state_dict, keep_head)
    except RuntimeError as error:
        raise ValueError(f"The state dict does not fit the paper's ViT ({len(layers)} blocks, D = {embedding_dim}); "
                         f"in the course's names: {error}") from error
    return model.eval()


@dataclass(frozen=True)
class PretrainedWeights:
    """One set of pretrained weights: its file (safetensors, timm's layout), the ``ViT`` keyword arguments its tensors
    fit, the preprocessing it expects (short side resized, centre cropped, normalised) and a line on its source."""
    url: str
    file_name: str
    architecture: Mapping[str, int]
    resize_size: int
    interpolation: InterpolationMode
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str

    def transforms(self) -> torchvision.transforms.Compose:
        """The preprocessing the weights were trained with: a PIL image -> a normalised [3, size, size] tensor."""
        steps = torchvision.transforms
        return steps.Compose([steps.Resize(self.resize_size, interpolation=self.interpolation, antialias=True),
                              steps.CenterCrop(self.architecture["img_size"]), steps.ToTensor(),
                              steps.Normalize(self.mean, self.std)])


# Adding weights is adding one entry. The hub file's checksum is not pinned: what loads is checked instead.
PRETRAINED_WEIGHTS: dict[str, PretrainedWeights] = {
    "vit_ti_16_augreg": PretrainedWeights(
        url="https://huggingface.co/timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k/resolve/main/model.safetensors",
        file_name="vit_tiny_patch16_224.safetensors",
        architecture={**VIT_PRESETS["vit_ti_16"], "img_size": 224, "num_classes": 1000},
        resize_size=248,  # timm's crop fraction 0.9: 224 / 0.9, rounded down
        interpolation=InterpolationMode.BICUBIC, mean=VIT_MEAN, std=VIT_STD,
        source=("ViT-Ti/16 AugReg (Steiner et al., 2021): ImageNet-21k pre-training, ImageNet-1k fine-tuning; "
                "Google, Apache-2.0; timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"),
    ),
}


def pretrained_weights_path(name: str = "vit_ti_16_augreg") -> Path:
    """Where ``load_pretrained_vit`` looks for the named weights, and downloads them to, in
    ``settings.get_weights_dir()``; ValueError for a name that is not a key of ``PRETRAINED_WEIGHTS``."""
    if name not in PRETRAINED_WEIGHTS:
        raise ValueError(f"Unknown pretrained weights {name!r}. Choose one of: {', '.join(PRETRAINED_WEIGHTS)}.")
    return settings.get_weights_dir() / PRETRAINED_WEIGHTS[name].file_name


def load_pretrained_vit(name: str = "vit_ti_16_augreg", num_classes: Optional[int] = None,
                        device: Union[str, torch.device, None] = None, freeze_backbone: bool = True,
                        img_size: Optional[ImageSize] = None) -> tuple[ViT, torchvision.transforms.Compose]:
    """The course's ViT (eval mode) holding named pretrained weights, and the transform from a PIL image to its input.
    The file at ``pretrained_weights_path(name)`` (downloaded when missing) must hold exactly the tensors of the
    registry's architecture: never random weights. Dropout stays 0, as the weights were trained.

    Args:
        num_classes: None: the pretrained head (``imagenet_class_names()``); a number: a new zero head (section 3.2).
        freeze_backbone: train only the head, notebook 06's feature extractor; False fine-tunes every weight.
        img_size: the resolution to fine-tune at (None: the weights' own, 224), the position embeddings
            interpolated to its patch grid (``resize_position_embedding``); ``transforms`` stay the weights' own.

    Raises:
        ValueError: ``name`` is not a key of ``PRETRAINED_WEIGHTS``, or ``img_size`` does not cut into patches.
        PretrainedWeightsUnavailableError: no local file and the download failed; the message says where to put it.
        PretrainedWeightsFileError: the file is damaged, not safetensors, or holds other tensors.
    """
    path, entry = pretrained_weights_path(name), PRETRAINED_WEIGHTS[name]
    architecture = {**entry.architecture, **({} if num_classes is None else {"num_classes": num_classes})}
    model = ViT(**architecture, **_NO_DROPOUT)
    from safetensors import SafetensorError  # here, so the rest of the module works without safetensors
    from safetensors.torch import load_file
    new_folder = not path.parent.exists()
    try:
        if not path.is_file():
            download_file(entry.url, path)
    except (ConnectionError, DownloadError) as error:
        if new_folder and path.parent.is_dir() and not any(path.parent.iterdir()):
            path.parent.rmdir()  # leave the machine as it was
        status = re.search(r"HTTP status \d+ \([^)]*\)", str(error))
        reason = f"the server answered {status[0]}" if status else "no connection, a timeout, or a broken download"
        raise PretrainedWeightsUnavailableError(
            f"The pretrained weights {name!r} are not in {path.parent} and could not be downloaded from {entry.url} "
            f"({reason}). Run where the internet is reachable (e.g. Colab); or save that file with a browser as "
            f"{path}, or set {settings.WEIGHTS_DIR_ENV} to a folder that holds {entry.file_name}. There is no "
            f"fallback to random weights.") from error
    try:
        state_dict = load_file(path, device="cpu")
    except (SafetensorError, OSError) as error:
        raise PretrainedWeightsFileError(
            f"{path} is not a readable safetensors file ({error}); it is probably damaged or an incomplete download. "
            f"Delete it and load again to download a fresh copy.") from error
    try:
        _load_timm(model, state_dict, keep_head=num_classes is None)
    except RuntimeError as error:
        raise PretrainedWeightsFileError(f"{path} does not hold the tensors of {dict(entry.architecture)} in timm's "
                                         f"layout ({error}). It may be another model's file or a damaged download: "
                                         f"delete it and load again to download a fresh copy.") from error
    if img_size is not None and to_pair(img_size) != to_pair(architecture["img_size"]):  # loaded as trained, then moved
        state_dict = model.state_dict()
        model = ViT(**{**architecture, "img_size": img_size}, **_NO_DROPOUT)
        state_dict["position_embedding"] = resize_position_embedding(state_dict["position_embedding"], model.grid_size)
        model.load_state_dict(state_dict)
    model.eval().requires_grad_(not freeze_backbone)
    model.head.requires_grad_(True)
    model.preprocessing = entry.transforms()  # what predictions.predict uses when given no transform
    return model.to(device), model.preprocessing


def vit_ti_16_feature_extractor(num_classes: int, device: Union[str, torch.device, None] = None
                                ) -> tuple[ViT, torchvision.transforms.Compose]:
    """``load_pretrained_vit("vit_ti_16_augreg", num_classes)``: the **course's** ViT-Ti/16 (5.7 M parameters) with
    ImageNet-trained AugReg weights, backbone frozen, a new zero-initialised head (notebook 06), and its transforms.

    Raises:
        PretrainedWeightsUnavailableError, PretrainedWeightsFileError: as ``load_pretrained_vit``.
    """
    return load_pretrained_vit("vit_ti_16_augreg", num_classes, device=device, freeze_backbone=True)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names in a pretrained head's order ("pizza" is 963), from torchvision's metadata."""
    return list(torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1.meta["categories"])
