"""The Vision Transformer of Dosovitskiy et al. (2020), "An Image is Worth 16x16 Words", as code, read top to bottom
in the order of the paper's section 3.1: equations 1, 2 and 3 (notebooks 01-03; the hybrid input, notebook 05), the
encoder and equation 4 (notebook 04), then Table 1's presets. Other libraries' weights load in ``pretrained``."""
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
    """Equation 1's patch projection x_p E: [B, C, H, W] -> [B, N, D], N = H W / P^2. A Conv2d with
    kernel = stride = P applies E to every patch: "flatten each patch and multiply by E" (notebook 01 proves it)."""

    def __init__(self, in_channels: int = 3, patch_size: int = 16, embedding_dim: int = 768) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.patcher = nn.Conv2d(in_channels, embedding_dim, kernel_size=patch_size, stride=patch_size)
        self.flatten = nn.Flatten(start_dim=2, end_dim=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(
                f"Expected a batch of images [batch, channels, height, width], got shape {tuple(x.shape)}.")
        channels, height, width = x.shape[1:]
        if channels != self.in_channels:
            raise ValueError(
                f"Expected {self.in_channels} colour channels, got {channels} (input shape {tuple(x.shape)}).")
        check_divisible_by_patch_size(height, width, self.patch_size)
        # [B, D, H/P, W/P] -> [B, D, N] -> [B, N, D]: one row per patch, in row-major order.
        return self.flatten(self.patcher(x)).transpose(1, 2)


class ConvStem(nn.Module):
    """The paper's hybrid input (section 3.1): "the patch embedding projection E (Eq. 1) is applied to patches extracted
    from a CNN feature map. As a special case, the patches can have spatial size 1x1." Xiao et al.'s (2021) stem: k
    stages of 3 x 3 stride-2 convolution, BatchNorm, ReLU: [B, C, H, W] -> [B, channels[-1], H / 2^k, W / 2^k]."""

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (24, 48, 96, 192)) -> None:
        super().__init__()
        if not channels:
            raise ValueError("A convolutional stem needs at least one stage: give channels, e.g. (24, 48, 96, 192).")
        stages = []
        for previous, width in zip([in_channels, *channels], channels):
            stages += [nn.Conv2d(previous, width, kernel_size=3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*stages)
        self.out_channels = channels[-1]
        self.stride = 2 ** len(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MultiheadSelfAttentionBlock(nn.Module):
    """Equation 2's MSA(LN(z)): LayerNorm, then multi-head self-attention (appendix A), D_h = D / heads. Fused
    ``F.scaled_dot_product_attention``; ``return_attention=True`` (or ``fused_attention=False``) computes
    softmax(q k^T / sqrt(D_h)) v step by step and also returns the weights [B, heads, N, N] (notebooks 02, 07).
    ``proj_dropout`` follows the output projection (dropout after every dense layer but qkv, appendix B.1)."""

    def __init__(self, embedding_dim: int = 768, num_heads: int = 12, attn_dropout: float = 0.0,
                 proj_dropout: float = 0.0, qkv_bias: bool = True, fused_attention: bool = True) -> None:
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

    def forward(self, x: torch.Tensor, return_attention: bool = False
                ) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        batch, tokens, dim = x.shape
        # [B, N, 3D] -> [3, B, heads, N, D_h]: q, k and v for every head.
        qkv = self.qkv(self.layer_norm(x)).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        dropout_p = self.attn_dropout if self.training else 0.0
        if return_attention or not self.fused_attention:
            weights = (q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)).softmax(dim=-1)
            out = F.dropout(weights, p=dropout_p) @ v
        else:
            weights, out = None, F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        # [B, heads, N, D_h] -> [B, N, D]: concatenate the heads, then project.
        out = self.proj_dropout(self.proj(out.transpose(1, 2).reshape(batch, tokens, dim)))
        return (out, weights) if return_attention else out


class MLPBlock(nn.Module):
    """Equation 3's MLP(LN(z)): LayerNorm, Linear, GELU, Dropout, Linear, Dropout (0.1 in Table 3)."""

    def __init__(self, embedding_dim: int = 768, mlp_size: int = 3072, dropout: float = 0.1) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(embedding_dim, eps=LAYER_NORM_EPS)
        self.mlp = nn.Sequential(nn.Linear(embedding_dim, mlp_size), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_size, embedding_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.layer_norm(x))


class TransformerEncoderBlock(nn.Module):
    """One encoder layer: equation 2 then equation 3, each with its residual.

        z'_l = MSA(LN(z_{l-1})) + z_{l-1}      (2)
        z_l  = MLP(LN(z'_l)) + z'_l            (3)

    ``drop_path``: stochastic depth (Huang et al. 2016; DeiT, timm, not the paper), each residual branch dropped
    for whole samples in training."""

    def __init__(self, embedding_dim: int = 768, num_heads: int = 12, mlp_size: int = 3072,
                 attn_dropout: float = 0.0, proj_dropout: float = 0.1, mlp_dropout: float = 0.1,
                 drop_path: float = 0.0, qkv_bias: bool = True, fused_attention: bool = True) -> None:
        super().__init__()
        self.msa_block = MultiheadSelfAttentionBlock(embedding_dim, num_heads, attn_dropout=attn_dropout,
                                                     proj_dropout=proj_dropout, qkv_bias=qkv_bias,
                                                     fused_attention=fused_attention)
        self.mlp_block = MLPBlock(embedding_dim, mlp_size, dropout=mlp_dropout)
        self.drop_path = StochasticDepth(drop_path, mode="row") if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, return_attention: bool = False
                ) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        attended = self.msa_block(x, return_attention=return_attention)
        if return_attention:
            attended, weights = attended
        x = x + self.drop_path(attended)
        x = x + self.drop_path(self.mlp_block(x))
        return (x, weights) if return_attention else x


class ViT(nn.Module):
    """The Vision Transformer, equations 1-4 of the paper, and a linear head on y.

        z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos      (1)
        z_l = encoder blocks, l = 1 ... L                   (2), (3)
        y   = LN(z_L^0)                                     (4)

    P = patch_size, L = num_transformer_layers, D = embedding_dim; the N patches lie row by row on
    ``grid_size`` = (rows, columns). ``img_size``: (height, width), or one int for a square. ValueError for sizes
    that do not fit together or an unknown pool.

    Args:
        drop_path_rate: stochastic depth of the last block, rising linearly from 0 in the first.
        pool: "cls" (the class token, the paper's default) or "mean" of the patch tokens (appendix D.3).
        representation_size: the width of a Linear + tanh "pre-logits" layer before the head (pre-training).
        stem_channels: the stages of a ``ConvStem`` (the hybrid); P then counts positions of its feature map, so
            the image must be divisible by 2^(stages) x P.
        distillation_token: DeiT's (Touvron et al., 2021): a second learned token after the class token, with its own
            position and head (``head_dist``), for ``training.distillation``; ``forward_head`` says what it returns.
    """

    def __init__(self, img_size: ImageSize = 224, in_channels: int = 3, patch_size: int = 16,
                 num_transformer_layers: int = 12, embedding_dim: int = 768, mlp_size: int = 3072, num_heads: int = 12,
                 num_classes: int = 1000, attn_dropout: float = 0.0, proj_dropout: float = 0.1,
                 mlp_dropout: float = 0.1, embedding_dropout: float = 0.1, drop_path_rate: float = 0.0,
                 qkv_bias: bool = True, pool: str = "cls", representation_size: Optional[int] = None,
                 fused_attention: bool = True, stem_channels: Optional[Sequence[int]] = None,
                 distillation_token: bool = False) -> None:
        super().__init__()
        height, width = to_pair(img_size, name="img_size")
        if pool not in ("cls", "mean"):
            raise ValueError(f'pool must be "cls" or "mean", got {pool!r}.')
        if distillation_token and pool != "cls":
            raise ValueError('A distillation token is read like the class token: use pool="cls".')
        self.stem = ConvStem(in_channels, stem_channels) if stem_channels else nn.Identity()
        # One token covers token_side pixels a side: P pixels of the image, or P positions of the stem's map.
        token_side = (self.stem.stride if stem_channels else 1) * patch_size
        check_divisible_by_patch_size(height, width, token_side)
        self.img_size = (height, width)
        self.patch_size = patch_size
        self.pool = pool
        self.grid_size = (height // token_side, width // token_side)
        self.num_patches = self.grid_size[0] * self.grid_size[1]

        self.patch_embedding = PatchEmbedding(self.stem.out_channels if stem_channels else in_channels,
                                              patch_size, embedding_dim)
        self.class_token = nn.Parameter(torch.zeros(1, 1, embedding_dim))
        # Off, the model and its state dict are the paper's exactly (no parameter of that name).
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, embedding_dim)) if distillation_token else None
        self.num_prefix_tokens = 2 if distillation_token else 1
        self.position_embedding = nn.Parameter(torch.zeros(1, self.num_patches + self.num_prefix_tokens, embedding_dim))
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        drop_paths = [drop_path_rate * i / max(num_transformer_layers - 1, 1) for i in range(num_transformer_layers)]
        self.transformer_encoder = nn.Sequential(*[
            TransformerEncoderBlock(embedding_dim, num_heads, mlp_size, attn_dropout=attn_dropout,
                                    proj_dropout=proj_dropout, mlp_dropout=mlp_dropout, drop_path=drop_path,
                                    qkv_bias=qkv_bias, fused_attention=fused_attention)
            for drop_path in drop_paths
        ])
        self.norm = nn.LayerNorm(embedding_dim, eps=LAYER_NORM_EPS)
        self.pre_logits = (nn.Identity() if representation_size is None
                           else nn.Sequential(nn.Linear(embedding_dim, representation_size), nn.Tanh()))
        self.head = nn.Linear(representation_size or embedding_dim, num_classes)
        self.head_dist = nn.Linear(representation_size or embedding_dim, num_classes) if distillation_token else None
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """Initialise as the paper's reference code and torchvision do."""
        patcher = self.patch_embedding.patcher
        nn.init.trunc_normal_(patcher.weight, std=math.sqrt(1 / patcher.weight[0].numel()))  # 1 / fan-in
        nn.init.zeros_(patcher.bias)
        nn.init.normal_(self.position_embedding, std=0.02)  # BERT's choice; the class token stays zero.
        if self.distillation_token is not None:
            nn.init.normal_(self.distillation_token, std=0.02)  # DeiT's: it must differ from the class token
        for block in self.transformer_encoder:
            nn.init.xavier_uniform_(block.msa_block.qkv.weight)
            if block.msa_block.qkv.bias is not None:
                nn.init.zeros_(block.msa_block.qkv.bias)
            nn.init.zeros_(block.msa_block.proj.bias)
            for layer in (block.mlp_block.mlp[0], block.mlp_block.mlp[3]):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.normal_(layer.bias, std=1e-6)
        if isinstance(self.pre_logits, nn.Sequential):
            dense = self.pre_logits[0]
            nn.init.trunc_normal_(dense.weight, std=math.sqrt(1 / dense.in_features))
            nn.init.zeros_(dense.bias)
        # A zero head starts every class at the same logit (the paper's fine-tuning head, section 3.2).
        for head in (self.head, self.head_dist):
            if head is not None:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    def forward_features(self, x: torch.Tensor, return_attention: bool = False
                         ) -> Union[torch.Tensor, tuple[torch.Tensor, list[torch.Tensor]]]:
        """Equations 1-4 up to LN: images [B, C, H, W] -> tokens [B, N + 1, D] (and each layer's attention);
        [B, N + 2, D] with a distillation token, which follows the class token."""
        if x.ndim == 4 and tuple(x.shape[-2:]) != self.img_size:
            height, width = self.img_size
            raise ValueError(f"This ViT was built for {height} x {width} images but got {x.shape[-2]} x {x.shape[-1]}. "
                             f"Resize the input (e.g. transforms.Resize(({height}, {width}))) or build the model "
                             f"with img_size=({x.shape[-2]}, {x.shape[-1]}).")
        x = self.patch_embedding(self.stem(x))
        prefix = [self.class_token] + ([self.distillation_token] if self.distillation_token is not None else [])
        x = torch.cat([token.expand(x.shape[0], -1, -1) for token in prefix] + [x], dim=1)
        x = self.embedding_dropout(x + self.position_embedding)
        attention = []
        for block in self.transformer_encoder:
            if return_attention:
                x, weights = block(x, return_attention=True)
                attention.append(weights)
            else:
                x = block(x)
        x = self.norm(x)
        return (x, attention) if return_attention else x

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False
                     ) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Pool the tokens [B, N + 1, D] and classify; ``pre_logits=True`` returns what the head would see. With a
        distillation token: (class, distillation) logits in training, their averaged prediction in evaluation."""
        pooled = self.pre_logits(features[:, 0] if self.pool == "cls" else features[:, 1:].mean(dim=1))
        if pre_logits:
            return pooled
        if self.head_dist is None:
            return self.head(pooled)
        logits = (self.head(pooled), self.head_dist(self.pre_logits(features[:, 1])))
        return logits if self.training else averaged_logits(logits)

    def forward(self, x: torch.Tensor, return_attention: bool = False
                ) -> Union[torch.Tensor, tuple[torch.Tensor, list[torch.Tensor]]]:
        if return_attention:
            features, attention = self.forward_features(x, return_attention=True)
            return self.forward_head(features), attention
        return self.forward_head(self.forward_features(x))


def averaged_logits(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """log(mean of the softmaxes of ``logits``): logits whose softmax, argmax and cross-entropy are those of the
    averaged prediction (DeiT's two heads at test time)."""
    return torch.logsumexp(torch.stack([logit.log_softmax(dim=-1) for logit in logits]), dim=0) - math.log(len(logits))


# Table 1 of the paper (Base, Large, Huge), plus DeiT's Tiny and Small (Touvron et al., 2021), quick to train on a CPU.
VIT_PRESETS: dict[str, dict[str, int]] = {
    "vit_ti_16": dict(patch_size=16, num_transformer_layers=12, embedding_dim=192, mlp_size=768, num_heads=3),
    "vit_s_16": dict(patch_size=16, num_transformer_layers=12, embedding_dim=384, mlp_size=1536, num_heads=6),
    "vit_b_16": dict(patch_size=16, num_transformer_layers=12, embedding_dim=768, mlp_size=3072, num_heads=12),
    "vit_l_16": dict(patch_size=16, num_transformer_layers=24, embedding_dim=1024, mlp_size=4096, num_heads=16),
    "vit_h_14": dict(patch_size=14, num_transformer_layers=32, embedding_dim=1280, mlp_size=5120, num_heads=16),
}


def create_vit(name: str, num_classes: int = 1000, **overrides) -> ViT:
    """A ``VIT_PRESETS`` model by name, e.g. ``create_vit("vit_b_16", num_classes=3, img_size=96)``; ValueError for
    another name."""
    if name not in VIT_PRESETS:
        raise ValueError(f"Unknown ViT preset {name!r}. Choose one of: {', '.join(VIT_PRESETS)}.")
    return ViT(**{**VIT_PRESETS[name], "num_classes": num_classes, **overrides})
