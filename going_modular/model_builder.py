"""The Vision Transformer of Dosovitskiy et al. (2020), "An Image is Worth 16x16 Words", as code.

The module reads in the order of the paper's section 3.1:
    equation 1  PatchEmbedding                (notebook 01)
    hybrid      ConvStem                      (section 3.1's CNN feature map as input; notebook 05)
    equation 2  MultiheadSelfAttentionBlock   (notebook 02)
    equation 3  MLPBlock                      (notebook 03)
    eq. 2 + 3   TransformerEncoderBlock       (notebook 04)
    equation 4  ViT                           (notebook 04)
then the Table 1 presets (``create_vit``). Loading other libraries' weights into this ViT lives in
``going_modular.pretrained`` (``vit_from_torchvision``, ``vit_from_timm_state_dict``, ``load_pretrained_vit``).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from going_modular.common.shapes import ImageSize, check_divisible_by_patch_size, to_pair

# torchvision (and the paper's reference code) use LayerNorm with eps=1e-6; PyTorch's default is 1e-5.
LAYER_NORM_EPS = 1e-6


class PatchEmbedding(nn.Module):
    """Equation 1's patch projection x_p E: split an image into P x P patches and map each to D numbers.

    A Conv2d with kernel = stride = P applies the same linear map E to every non-overlapping patch,
    which is exactly "flatten each patch and multiply by E" (notebook 01 proves it numerically).

    Args:
        in_channels: colour channels C of the input image.
        patch_size: P, the side of a square patch in pixels.
        embedding_dim: D, the size of each patch's embedding (768 for ViT-Base, Table 1).

    Shapes:
        [batch, C, H, W] -> [batch, N, D] with N = H * W / P^2 (H and W need not be equal).
    """

    def __init__(self, in_channels: int = 3, patch_size: int = 16, embedding_dim: int = 768) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.patcher = nn.Conv2d(in_channels, embedding_dim, kernel_size=patch_size, stride=patch_size)
        self.flatten = nn.Flatten(start_dim=2, end_dim=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"Expected a batch of images [batch, channels, height, width], got shape {tuple(x.shape)}.")
        channels, height, width = x.shape[1:]
        if channels != self.in_channels:
            raise ValueError(f"Expected {self.in_channels} colour channels, got {channels} (input shape {tuple(x.shape)}).")
        check_divisible_by_patch_size(height, width, self.patch_size)
        # [B, D, H/P, W/P] -> [B, D, N] -> [B, N, D]: one row per patch, as the paper's sequence.
        return self.flatten(self.patcher(x)).transpose(1, 2)


class ConvStem(nn.Module):
    """The paper's hybrid input (section 3.1): a small CNN whose feature map takes the place of the image.

    "As an alternative to raw image patches, the input sequence can be formed from feature maps of a
    CNN. In this hybrid model, the patch embedding projection E (Eq. 1) is applied to patches extracted
    from a CNN feature map. As a special case, the patches can have spatial size 1x1." Here the CNN is
    a stack of 3 x 3 convolutions of stride 2, each followed by BatchNorm and ReLU (the "convolutional
    stem" of Xiao et al., 2021, "Early Convolutions Help Transformers See Better"); ``PatchEmbedding``
    with P = 1 then projects every position of its feature map to one token.

    Args:
        in_channels: colour channels C of the image.
        channels: output channels of each stage; k stages shrink the image by 2^k.

    Shapes:
        [batch, C, H, W] -> [batch, channels[-1], H / 2^k, W / 2^k].
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (24, 48, 96, 192)) -> None:
        super().__init__()
        if not channels:
            raise ValueError("A convolutional stem needs at least one stage: give channels, e.g. (24, 48, 96, 192).")
        stages, previous = [], in_channels
        for width in channels:
            stages += [nn.Conv2d(previous, width, kernel_size=3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            previous = width
        self.layers = nn.Sequential(*stages)
        self.out_channels = previous
        self.stride = 2 ** len(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MultiheadSelfAttentionBlock(nn.Module):
    """Equation 2's MSA(LN(z)): LayerNorm, then multi-head self-attention (appendix A).

    q, k and v come from one linear projection of the normalised tokens. By default the attention
    runs in PyTorch's fused ``F.scaled_dot_product_attention``; with ``return_attention=True`` (or
    ``fused_attention=False``) it is computed step by step, softmax(q k^T / sqrt(d_head)) v, and the
    attention weights are returned too, for the pictures in notebooks 02 and 07.

    Args:
        embedding_dim: D, the width of each token.
        num_heads: k, the number of heads; D must be divisible by it (D_h = D / k).
        attn_dropout: dropout on the attention weights.
        proj_dropout: dropout after the output projection (the paper puts dropout after every
            dense layer except the qkv projection, appendix B.1).
        qkv_bias: whether the qkv projection has a bias (torchvision's does).
        fused_attention: use the fused kernel when attention weights are not requested.
    """

    def __init__(
        self,
        embedding_dim: int = 768,
        num_heads: int = 12,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
        qkv_bias: bool = True,
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        if embedding_dim % num_heads:
            raise ValueError(f"embedding_dim ({embedding_dim}) must be divisible by num_heads ({num_heads}).")
        self.num_heads = num_heads
        self.head_dim = embedding_dim // num_heads
        self.attn_dropout = attn_dropout
        self.fused_attention = fused_attention
        self.layer_norm = nn.LayerNorm(embedding_dim, eps=LAYER_NORM_EPS)
        self.qkv = nn.Linear(embedding_dim, 3 * embedding_dim, bias=qkv_bias)
        self.proj = nn.Linear(embedding_dim, embedding_dim)
        self.proj_dropout = nn.Dropout(proj_dropout)

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        batch, tokens, dim = x.shape
        x = self.layer_norm(x)
        # [B, N, 3D] -> [3, B, heads, N, D_h]: q, k and v for every head.
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        dropout_p = self.attn_dropout if self.training else 0.0
        if return_attention or not self.fused_attention:
            weights = (q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)).softmax(dim=-1)
            out = F.dropout(weights, p=dropout_p) @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        # [B, heads, N, D_h] -> [B, N, D]: concatenate the heads, then project.
        out = self.proj_dropout(self.proj(out.transpose(1, 2).reshape(batch, tokens, dim)))
        return (out, weights) if return_attention else out


class MLPBlock(nn.Module):
    """Equation 3's MLP(LN(z)): LayerNorm, Linear, GELU, Dropout, Linear, Dropout.

    Args:
        embedding_dim: D, the width of each token.
        mlp_size: the hidden width (3072 for ViT-Base, Table 1).
        dropout: dropout after each dense layer (appendix B.1; 0.1 in Table 3).
    """

    def __init__(self, embedding_dim: int = 768, mlp_size: int = 3072, dropout: float = 0.1) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(embedding_dim, eps=LAYER_NORM_EPS)
        self.mlp = nn.Sequential(
            nn.Linear(embedding_dim, mlp_size),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_size, embedding_dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.layer_norm(x))


class TransformerEncoderBlock(nn.Module):
    """One layer of the Transformer encoder: equation 2 then equation 3, each with its residual.

        z'_l = MSA(LN(z_{l-1})) + z_{l-1}      (2)
        z_l  = MLP(LN(z'_l)) + z'_l            (3)

    With ``drop_path > 0`` each residual branch is dropped for whole samples during training
    (stochastic depth, Huang et al. 2016), a regulariser the paper did not use but later ViT
    recipes (DeiT, timm) do.
    """

    def __init__(
        self,
        embedding_dim: int = 768,
        num_heads: int = 12,
        mlp_size: int = 3072,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.1,
        mlp_dropout: float = 0.1,
        drop_path: float = 0.0,
        qkv_bias: bool = True,
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        self.msa_block = MultiheadSelfAttentionBlock(
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            attn_dropout=attn_dropout,
            proj_dropout=proj_dropout,
            qkv_bias=qkv_bias,
            fused_attention=fused_attention,
        )
        self.mlp_block = MLPBlock(embedding_dim=embedding_dim, mlp_size=mlp_size, dropout=mlp_dropout)
        self.drop_path = StochasticDepth(drop_path, mode="row") if drop_path > 0 else nn.Identity()

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if return_attention:
            attended, weights = self.msa_block(x, return_attention=True)
        else:
            attended = self.msa_block(x)
        x = x + self.drop_path(attended)
        x = x + self.drop_path(self.mlp_block(x))
        return (x, weights) if return_attention else x


class ViT(nn.Module):
    """The Vision Transformer, equations 1-4 of the paper.

        z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos      (1)
        z_l = encoder blocks, l = 1 ... L                   (2), (3)
        y   = LN(z_L^0)                                     (4)

    and a linear head on y. With ``pool="mean"`` the head sees the mean of the patch tokens instead of
    the class token (the paper compares the two in appendix D.3). With ``stem_channels`` it is the
    paper's hybrid: the patches x_p come from the feature map of a ``ConvStem`` instead of the image
    (with P = 1, one token per position of the feature map).

    Args:
        img_size: image height and width (an int for square images).
        in_channels: colour channels C.
        patch_size: P.
        num_transformer_layers: L.
        embedding_dim: D (the paper's "hidden size").
        mlp_size: the MLP's hidden width.
        num_heads: heads in each MSA block.
        num_classes: outputs of the head.
        attn_dropout: dropout on the attention weights, in every block.
        proj_dropout: dropout after each attention block's output projection.
        mlp_dropout: dropout after each dense layer of the MLP blocks.
        embedding_dropout: dropout right after the position embedding is added.
        drop_path_rate: stochastic depth rate of the last block; it rises linearly from 0 in the first.
        qkv_bias: whether the qkv projections have a bias.
        pool: "cls" (class token, the paper's default) or "mean".
        representation_size: if given, a Linear + tanh "pre-logits" layer of this width before the head
            (the paper's pre-training head; torchvision's ``representation_size``).
        fused_attention: use the fused attention kernel when attention weights are not requested.
        stem_channels: the channels of a ``ConvStem``'s stages, for the hybrid model; None (the default)
            for the paper's plain ViT on image patches. P is then measured on the feature map, and the
            image must be divisible by 2^(number of stages) x P.

    Raises:
        ValueError: for sizes that do not fit together (an image size that is not positive or not
            divisible by the patch size, D not divisible by the number of heads, an unknown pool).
    """

    def __init__(
        self,
        img_size: ImageSize = 224,
        in_channels: int = 3,
        patch_size: int = 16,
        num_transformer_layers: int = 12,
        embedding_dim: int = 768,
        mlp_size: int = 3072,
        num_heads: int = 12,
        num_classes: int = 1000,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.1,
        mlp_dropout: float = 0.1,
        embedding_dropout: float = 0.1,
        drop_path_rate: float = 0.0,
        qkv_bias: bool = True,
        pool: str = "cls",
        representation_size: Optional[int] = None,
        fused_attention: bool = True,
        stem_channels: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__()
        height, width = to_pair(img_size, name="img_size")
        if pool not in ("cls", "mean"):
            raise ValueError(f'pool must be "cls" or "mean", got {pool!r}.')
        self.stem = ConvStem(in_channels=in_channels, channels=stem_channels) if stem_channels else nn.Identity()
        stem_stride = self.stem.stride if stem_channels else 1
        # Each token covers stem_stride * P pixels a side: P pixels of the image, or P positions of the stem's map.
        check_divisible_by_patch_size(height, width, stem_stride * patch_size)
        self.img_size = (height, width)
        self.patch_size = patch_size
        self.pool = pool
        self.num_patches = (height // (stem_stride * patch_size)) * (width // (stem_stride * patch_size))

        self.patch_embedding = PatchEmbedding(
            in_channels=self.stem.out_channels if stem_channels else in_channels,
            patch_size=patch_size,
            embedding_dim=embedding_dim,
        )
        self.class_token = nn.Parameter(torch.zeros(1, 1, embedding_dim))
        self.position_embedding = nn.Parameter(torch.zeros(1, self.num_patches + 1, embedding_dim))
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        drop_paths = [drop_path_rate * i / max(num_transformer_layers - 1, 1) for i in range(num_transformer_layers)]
        self.transformer_encoder = nn.Sequential(
            *[
                TransformerEncoderBlock(
                    embedding_dim=embedding_dim,
                    num_heads=num_heads,
                    mlp_size=mlp_size,
                    attn_dropout=attn_dropout,
                    proj_dropout=proj_dropout,
                    mlp_dropout=mlp_dropout,
                    drop_path=drop_path,
                    qkv_bias=qkv_bias,
                    fused_attention=fused_attention,
                )
                for drop_path in drop_paths
            ]
        )
        self.norm = nn.LayerNorm(embedding_dim, eps=LAYER_NORM_EPS)
        if representation_size is None:
            self.pre_logits = nn.Identity()
            head_in = embedding_dim
        else:
            self.pre_logits = nn.Sequential(nn.Linear(embedding_dim, representation_size), nn.Tanh())
            head_in = representation_size
        self.head = nn.Linear(head_in, num_classes)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """Initialise as the paper's reference code and torchvision do."""
        patcher = self.patch_embedding.patcher
        fan_in = patcher.in_channels * patcher.kernel_size[0] * patcher.kernel_size[1]
        nn.init.trunc_normal_(patcher.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(patcher.bias)
        nn.init.normal_(self.position_embedding, std=0.02)  # BERT's choice; the class token stays zero.
        for block in self.transformer_encoder:
            nn.init.xavier_uniform_(block.msa_block.qkv.weight)
            if block.msa_block.qkv.bias is not None:
                nn.init.zeros_(block.msa_block.qkv.bias)
            nn.init.zeros_(block.msa_block.proj.bias)
            for layer in block.mlp_block.mlp:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.normal_(layer.bias, std=1e-6)
        if isinstance(self.pre_logits, nn.Sequential):
            dense = self.pre_logits[0]
            nn.init.trunc_normal_(dense.weight, std=math.sqrt(1 / dense.in_features))
            nn.init.zeros_(dense.bias)
        # A zero head starts every class at the same logit (the paper's fine-tuning head, section 3.2).
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward_features(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> Union[torch.Tensor, tuple[torch.Tensor, list[torch.Tensor]]]:
        """Equations 1-4 up to LN: images [B, C, H, W] -> normalised tokens [B, N + 1, D].

        With ``return_attention=True`` also returns each layer's attention weights [B, heads, N+1, N+1].
        """
        if x.ndim == 4 and tuple(x.shape[-2:]) != self.img_size:
            height, width = self.img_size
            raise ValueError(
                f"This ViT was built for {height} x {width} images but got {x.shape[-2]} x {x.shape[-1]}. "
                f"Resize the input (e.g. transforms.Resize(({height}, {width}))) or build the model with "
                f"img_size=({x.shape[-2]}, {x.shape[-1]})."
            )
        x = self.patch_embedding(self.stem(x))
        class_token = self.class_token.expand(x.shape[0], -1, -1)
        x = self.embedding_dropout(torch.cat((class_token, x), dim=1) + self.position_embedding)
        attention = []
        for block in self.transformer_encoder:
            if return_attention:
                x, weights = block(x, return_attention=True)
                attention.append(weights)
            else:
                x = block(x)
        x = self.norm(x)
        return (x, attention) if return_attention else x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Pool the tokens (class token or mean of patch tokens) and classify: [B, N + 1, D] -> [B, classes]."""
        pooled = features[:, 0] if self.pool == "cls" else features[:, 1:].mean(dim=1)
        return self.head(self.pre_logits(pooled))

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> Union[torch.Tensor, tuple[torch.Tensor, list[torch.Tensor]]]:
        if return_attention:
            features, attention = self.forward_features(x, return_attention=True)
            return self.forward_head(features), attention
        return self.forward_head(self.forward_features(x))


# Table 1 of the paper (Base, Large, Huge), plus the Tiny and Small sizes of DeiT (Touvron et al.,
# 2021) that train in reasonable time on a CPU.
VIT_PRESETS: dict[str, dict[str, int]] = {
    "vit_ti_16": dict(patch_size=16, num_transformer_layers=12, embedding_dim=192, mlp_size=768, num_heads=3),
    "vit_s_16": dict(patch_size=16, num_transformer_layers=12, embedding_dim=384, mlp_size=1536, num_heads=6),
    "vit_b_16": dict(patch_size=16, num_transformer_layers=12, embedding_dim=768, mlp_size=3072, num_heads=12),
    "vit_l_16": dict(patch_size=16, num_transformer_layers=24, embedding_dim=1024, mlp_size=4096, num_heads=16),
    "vit_h_14": dict(patch_size=14, num_transformer_layers=32, embedding_dim=1280, mlp_size=5120, num_heads=16),
}


def create_vit(name: str, num_classes: int = 1000, **overrides) -> ViT:
    """Build a ViT preset by name, e.g. ``create_vit("vit_b_16", num_classes=3)``.

    Args:
        name: one of ``VIT_PRESETS`` ("vit_ti_16", "vit_s_16", "vit_b_16", "vit_l_16", "vit_h_14").
        num_classes: outputs of the head.
        **overrides: any other ``ViT`` argument (img_size, drop_path_rate, pool, ...).

    Raises:
        ValueError: for an unknown preset name.
    """
    if name not in VIT_PRESETS:
        raise ValueError(f"Unknown ViT preset {name!r}. Choose one of: {', '.join(VIT_PRESETS)}.")
    return ViT(**{**VIT_PRESETS[name], "num_classes": num_classes, **overrides})


# Pretrained weights moved to going_modular.pretrained (issue 11). For one release these names stay
# importable from here, so that notebooks and learners' code keep working; they are looked up on first
# use, because pretrained imports this module.
_MOVED_TO_PRETRAINED = frozenset({
    "vit_from_torchvision",
    "create_vit_feature_extractor",
    "resize_position_embedding",
    "PretrainedWeightsUnavailableError",
    "RandomWeightsWarning",
    "_load_pretrained_vit_b_16",
    "_torchvision_key_map",
})


def __getattr__(name: str) -> object:
    if name in _MOVED_TO_PRETRAINED:
        from going_modular import pretrained

        return getattr(pretrained, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
