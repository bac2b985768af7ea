"""Fixtures for the model tests: tiny configs, synthetic batches, golden files, OpenAI-format
archives.
"""

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from config import load_config

REPO = Path(__file__).resolve().parents[2]
# DeMo's own features and the seeds' SDTPS outputs for fixed weights and inputs (README.md there).
GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture
def golden_dir():
    """The golden fixtures; a missing one fails the test: the proof of equivalence never skips."""
    return GOLDEN


@pytest.fixture
def smoke_cfg():
    """smoke_cfg(name='DeMo', *opts) -> frozen config of configs/_smoke/<name>.yml with
    overrides.
    """

    def make(name="DeMo", *opts):
        return load_config(str(REPO / "configs" / "_smoke" / f"{name}.yml"), list(opts))

    return make


@pytest.fixture
def make_batch():
    """make_batch(cfg, b=4, ids=2) -> a training batch dict with `ids` identities of b // ids
    images.
    """

    def make(cfg, b=4, ids=2, cams=4):
        h, w = cfg.INPUT.SIZE_TRAIN
        g = torch.Generator().manual_seed(0)
        return {
            "images": {m: torch.randn(b, 3, h, w, generator=g) for m in cfg.INPUT.MODALITIES},
            "pids": torch.arange(b) % ids,
            "camids": torch.arange(b) % cams,
        }

    return make


class _ResBlock(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                c_fc=nn.Linear(width, 4 * width), gelu=nn.GELU(), c_proj=nn.Linear(4 * width, width)
            )
        )
        self.ln_2 = nn.LayerNorm(width)


class _Visual(nn.Module):
    def __init__(self, width, layers, heads, patch, grid, out_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width))
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(
            *[_ResBlock(width, heads) for _ in range(layers)]
        )
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, out_dim))


class OpenAICLIP(nn.Module):
    """A module with OpenAI CLIP's key names (visual tower + a small text tower), random values."""

    def __init__(self, width=768, layers=12, heads=12, patch=16, grid=14, out_dim=512):
        super().__init__()
        self.visual = _Visual(width, layers, heads, patch, grid, out_dim)
        self.token_embedding = nn.Embedding(16, 8)
        self.ln_final = nn.LayerNorm(8)
        self.text_projection = nn.Parameter(torch.randn(8, out_dim))
        self.logit_scale = nn.Parameter(torch.ones([]))
        with torch.no_grad():
            for p in self.parameters():
                p.normal_(0, 0.02)

    def forward(self, x):
        return x * self.logit_scale


def write_torchscript(path, **kwargs):
    """An fp16 TorchScript archive like OpenAI's ViT-B-16.pt; returns its state dict."""
    torch.manual_seed(1)
    # Tracing keeps every submodule's parameters while compiling only the trivial forward.
    module = torch.jit.trace(OpenAICLIP(**kwargs).half().eval(), torch.ones(2, dtype=torch.float16))
    torch.jit.save(module, str(path))
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="session")
def vit_b16_torchscript(tmp_path_factory):
    """A full-size (ViT-B/16, 14x14 grid) random OpenAI TorchScript fp16 archive, once per
    session.
    """
    path = tmp_path_factory.mktemp("clip") / "ViT-B-16.pt"
    return path, write_torchscript(path)


@pytest.fixture
def tiny_torchscript(tmp_path):
    """A small-width OpenAI-format TorchScript archive matching configs/_smoke (width 64, patch
    8).
    """
    path = tmp_path / "tiny-clip.pt"
    return path, write_torchscript(path, width=64, layers=2, heads=4, patch=8, grid=7, out_dim=64)
