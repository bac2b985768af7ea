"""ViT backbones on timm's VisionTransformer: the CLIP visual tower and the ImageNet ViT.

A backbone maps images (B, 3, H, W) to tokens (B, 1 + N, C): the class token first, then the N patch
tokens in row-major grid order. The CLIP tower applies `ln_post` and the bias-free width -> C
projection to every token; the ImageNet ViT returns its final-norm tokens (C = its width). Each
type's sizes and C are registered in modeling/backbones/specs.py. The SIE camera embedding
(B, width) is passed in from outside (its table is not a backbone parameter): the CLIP path adds
it to the class token before the position embedding, the ImageNet path to all tokens.
"""

import contextlib
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import PatchEmbed, to_2tuple
from timm.models.vision_transformer import VisionTransformer
from torch.nn.attention import SDPBackend, sdpa_kernel

from .specs import backbone_spec


class StridedPatchEmbed(PatchEmbed):
    """timm's PatchEmbed with a stride that may be smaller than the patch (overlapping patches).

    The grid is (H - p) // s + 1 by (W - p) // s + 1, e.g. 21 x 10 = 210 patches for 256x128 at
    stride 12.
    """

    def __init__(self, *, stride, img_size, patch_size, in_chans, embed_dim, bias=True, **kwargs):
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            bias=bias,
            **kwargs,
        )
        self.stride = to_2tuple(stride)
        if self.stride != self.patch_size:
            self.proj = nn.Conv2d(
                in_chans, embed_dim, kernel_size=self.patch_size, stride=self.stride, bias=bias
            )
        self.grid_size = tuple(
            (s - p) // st + 1 for s, p, st in zip(self.img_size, self.patch_size, self.stride)
        )
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    def forward(self, x):
        if self.stride != self.patch_size or not self.flatten:
            return super().forward(x)
        # Non-overlapping patches: the convolution is one matrix product over the unfolded
        # patches (a GPU convolution kernel with a 16x16 stride-16 window runs several times
        # slower than the same product); same weights, same (c, y, x) order as Conv2d's.
        b, c, h, w = x.shape
        if (h, w) != self.img_size:
            raise ValueError(
                f"input images are {h}x{w}, the model is built for "
                f"{self.img_size[0]}x{self.img_size[1]}"
            )
        (ph, pw), (gh, gw) = self.patch_size, self.grid_size
        x = x.reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, -1)
        x = F.linear(x, self.proj.weight.reshape(self.proj.out_channels, -1), self.proj.bias)
        return self.norm(x)


class ReIDViT(VisionTransformer):
    """A VisionTransformer that returns every token and takes an optional SIE embedding.

    `clip=True`: pre-norm (`norm_pre` = CLIP's ln_pre), QuickGELU, SIE on the class token, and
    `proj`
    (width, out_dim) applied after the final norm (`norm` = ln_post). `clip=False`: TransReID's
    ImageNet
    ViT, SIE on all tokens, no projection.
    """

    def __init__(
        self,
        *,
        clip,
        img_size,
        patch_size,
        stride,
        width,
        depth,
        heads,
        out_dim=None,
        drop_path=0.0,
        drop=0.0,
        attn_drop=0.0,
        sdpa_backend="auto",
    ):
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=width,
            depth=depth,
            num_heads=heads,
            num_classes=0,
            global_pool="",
            class_token=True,
            pre_norm=clip,
            norm_layer=partial(nn.LayerNorm, eps=1e-5 if clip else 1e-6),
            act_layer="quick_gelu" if clip else "gelu",
            pos_drop_rate=drop,
            proj_drop_rate=drop,
            attn_drop_rate=attn_drop,
            drop_path_rate=drop_path,
            embed_layer=partial(StridedPatchEmbed, stride=stride),
        )
        self.clip = clip
        self.sdpa_backend = sdpa_backend
        self.width = width
        self.out_dim = out_dim if clip else width
        if clip:
            self.proj = nn.Parameter(torch.randn(width, out_dim) * width**-0.5)
        else:
            self.proj = None

    @property
    def num_patches(self):
        """N, the real number of patch tokens of the built grid."""
        return self.patch_embed.num_patches

    @property
    def grid_size(self):
        return self.patch_embed.grid_size

    def forward(self, x, sie=None):
        """x: (B, 3, H, W); sie: (B, width) or None -> tokens (B, 1 + N, C)."""
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        if sie is not None and self.clip:
            cls = cls + sie.unsqueeze(1).to(cls.dtype)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        if sie is not None and not self.clip:
            x = x + sie.unsqueeze(1).to(x.dtype)
        x = self.norm_pre(self.pos_drop(x))
        with self._attention_kernel():
            x = self.norm(self.blocks(x))
        if self.proj is not None:
            x = x @ self.proj
        return x

    def _attention_kernel(self):
        if self.sdpa_backend == "auto":
            return contextlib.nullcontext()
        name = {
            "cudnn": "CUDNN_ATTENTION",
            "flash": "FLASH_ATTENTION",
            "efficient": "EFFICIENT_ATTENTION",
            "math": "MATH",
        }[self.sdpa_backend]
        return sdpa_kernel([getattr(SDPBackend, name)])


def build_vit(cfg, spec):
    """The ReIDViT of `spec` (modeling/backbones/specs.py: a MODEL.TRANSFORMER_TYPE's entry)."""
    m = cfg.MODEL
    # CLIP towers were trained without stochastic depth (DeMo runs them without); CLIP projects
    # every token to out_dim.
    head = dict(out_dim=spec.feature_dim(cfg)) if spec.clip else dict(drop_path=m.DROP_PATH)
    return ReIDViT(
        clip=spec.clip,
        img_size=tuple(cfg.INPUT.SIZE_TRAIN),
        stride=tuple(m.STRIDE_SIZE),
        drop=m.DROP_OUT,
        attn_drop=m.ATT_DROP_RATE,
        sdpa_backend=m.SDPA_BACKEND,
        **spec.sizes(cfg),
        **head,
    )


def grid_size(cfg):
    """The patch grid (gh, gw) that `build_vit(cfg, ...)` builds, without building it."""
    p = backbone_spec(cfg).patch_size(cfg)
    (h, w), (sh, sw) = cfg.INPUT.SIZE_TRAIN, cfg.MODEL.STRIDE_SIZE
    return (h - p) // sh + 1, (w - p) // sw + 1
