"""Weights in every supported format arrive weight for weight; bad files fail clearly."""

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from config import load_config
from modeling import build_model, load_weights
from modeling.backbones import build_backbone
from utils.safe_load import read_torchscript

from .conftest import REPO, OpenAICLIP


def _bilinear(pos, grid, side):
    """The expected resampled position embedding, computed independently: (side^2 + 1, D) ->
    grid.
    """
    patches = pos[1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=grid, mode="bilinear", align_corners=False)
    return torch.cat([pos[:1].float(), patches.permute(0, 2, 3, 1).reshape(-1, pos.shape[1])])


def _assert_openai_weights(backbone, sd, side):
    own = backbone.state_dict()
    depth = len(backbone.blocks)
    assert torch.equal(own["patch_embed.proj.weight"], sd["visual.conv1.weight"].float())
    assert torch.equal(own["cls_token"].flatten(), sd["visual.class_embedding"].float())
    assert torch.equal(own["proj"], sd["visual.proj"].float())
    assert torch.allclose(
        own["pos_embed"][0],
        _bilinear(sd["visual.positional_embedding"], backbone.grid_size, side),
        atol=1e-6,
    )
    pairs = {"norm_pre": "ln_pre", "norm": "ln_post"}
    for i in range(depth):
        pairs.update(
            {
                f"blocks.{i}.attn.qkv": f"transformer.resblocks.{i}.attn.in_proj_",
                f"blocks.{i}.attn.proj": f"transformer.resblocks.{i}.attn.out_proj",
                f"blocks.{i}.norm1": f"transformer.resblocks.{i}.ln_1",
                f"blocks.{i}.norm2": f"transformer.resblocks.{i}.ln_2",
                f"blocks.{i}.mlp.fc1": f"transformer.resblocks.{i}.mlp.c_fc",
                f"blocks.{i}.mlp.fc2": f"transformer.resblocks.{i}.mlp.c_proj",
            }
        )
    for ours, theirs in pairs.items():
        for p in ("weight", "bias"):
            key = f"visual.{theirs}{p}" if theirs.endswith("_") else f"visual.{theirs}.{p}"
            assert torch.equal(own[f"{ours}.{p}"], sd[key].float()), key
    assert len(own) == 4 + 2 + 2 + 12 * depth


@pytest.mark.slow
def test_openai_torchscript_vit_b16_fp16(vit_b16_torchscript, caplog):
    path, sd = vit_b16_torchscript
    assert sd["visual.conv1.weight"].dtype == torch.float16
    cfg = load_config(str(REPO / "configs/RGBNT201/DeMo.yml"), ["MODEL.PRETRAIN_PATH", str(path)])
    with caplog.at_level("INFO"):
        backbone = build_backbone(cfg)
    assert "loaded 152 backbone tensors" in caplog.text
    assert backbone.pos_embed.shape == (1, 129, 768)
    _assert_openai_weights(backbone, sd, 14)


def test_small_torchscript_and_plain_openai_dict(smoke_cfg, tiny_torchscript, tmp_path):
    path, sd = tiny_torchscript
    backbone = build_backbone(smoke_cfg("DeMo", "MODEL.PRETRAIN_PATH", str(path)))
    assert backbone.grid_size == (8, 4)
    _assert_openai_weights(backbone, sd, 7)
    plain = tmp_path / "openai_plain.pt"
    torch.save({k: v.float() for k, v in sd.items()}, plain)
    _assert_openai_weights(
        build_backbone(smoke_cfg("DeMo", "MODEL.PRETRAIN_PATH", str(plain))), sd, 7
    )


def _jit_state_dict(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").state_dict()


def _assert_same_state(got, ref):
    """Same keys in the same order, same dtype / shape / strides, the same bits."""
    assert list(got) == list(ref)
    for k, want in ref.items():
        have = got[k]
        assert (have.dtype, have.shape, have.stride()) == (want.dtype, want.shape, want.stride()), k
        bits = have.reshape(-1).view(torch.uint8), want.reshape(-1).view(torch.uint8)
        assert torch.equal(*bits), k


def test_torchscript_reader_gives_jit_state_dict(tmp_path):
    """An fp16 archive with OpenAI's module tree (traced, as OpenAI's files are): the reader
    returns what torch.jit.load(...).state_dict() returns. Scripted archives: the next test."""
    torch.manual_seed(0)
    clip = OpenAICLIP(width=32, layers=2, heads=4, patch=8, grid=3, out_dim=16).half().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.trace(clip, torch.ones(2, dtype=torch.float16))
        torch.jit.save(module, str(tmp_path / "clip.pt"))
    got = read_torchscript(tmp_path / "clip.pt")
    _assert_same_state(got, _jit_state_dict(tmp_path / "clip.pt"))
    for key in (
        "visual.conv1.weight",
        "visual.class_embedding",
        "visual.positional_embedding",
        "visual.transformer.resblocks.1.attn.in_proj_weight",
        "visual.transformer.resblocks.0.mlp.c_fc.weight",
        "visual.ln_post.bias",
        "visual.proj",
    ):
        assert got[key].dtype == torch.float16, key
    assert torch.equal(got["visual.proj"], clip.visual.proj.detach())


class _Layouts(nn.Module):
    """Every layout a weights archive can hold: buffers (a non-persistent one, an int64 one),
    None parameters and buffers, tied weights, a transposed parameter, bf16 / fp16, 0-d and
    empty tensors, containers, and a plain tensor attribute that is not state."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3, bias=False)
        self.bn = nn.BatchNorm1d(3)
        self.tied = nn.Linear(4, 3, bias=False)
        self.tied.weight = self.fc.weight
        self.seq = nn.Sequential(nn.Linear(3, 3), nn.GELU(), nn.LayerNorm(3))
        self.blocks = nn.ModuleList([nn.Linear(3, 3).to(torch.bfloat16) for _ in range(2)])
        self.heads = nn.ModuleDict({"a": nn.Linear(3, 2), "b": nn.Linear(3, 2)})
        self.t = nn.Parameter(torch.randn(5, 6).t())
        self.scale = nn.Parameter(torch.tensor(2.5))
        self.empty = nn.Parameter(torch.empty(0, 3))
        self.fp16 = nn.Parameter(torch.randn(2, 3).half())
        self.register_buffer("steps", torch.arange(4))
        self.register_buffer("temp", torch.ones(2), persistent=False)
        self.register_buffer("nothing", None)
        self.mask = torch.ones(3, 3)

    def forward(self, x):
        y = self.seq(self.bn(self.fc(x)) + self.tied(x))
        for block in self.blocks:
            y = block(y.to(torch.bfloat16)).float()
        return self.heads["a"](y) * self.scale + self.mask.sum() + self.temp.sum()


def test_torchscript_reader_handles_every_layout(tmp_path):
    torch.manual_seed(0)
    model = _Layouts()
    model.bn.running_mean.normal_()
    model.bn.num_batches_tracked += 7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(model), str(tmp_path / "layouts.pt"))
    got = read_torchscript(tmp_path / "layouts.pt")
    _assert_same_state(got, _jit_state_dict(tmp_path / "layouts.pt"))
    assert "mask" not in got and got["bn.num_batches_tracked"].item() == 7
    assert got["tied.weight"].data_ptr() == got["fc.weight"].data_ptr()  # one storage, as saved


def test_pretrained_torchscript_never_runs_jit_load(smoke_cfg, tiny_torchscript, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.jit.load runs the archive's TorchScript")

    monkeypatch.setattr(torch.jit, "load", refuse)
    path, sd = tiny_torchscript
    _assert_openai_weights(
        build_backbone(smoke_cfg("DeMo", "MODEL.PRETRAIN_PATH", str(path))), sd, 7
    )


def test_timm_imagenet_pth(smoke_cfg, tmp_path):
    torch.manual_seed(0)
    ref = VisionTransformer(
        img_size=56, patch_size=8, embed_dim=48, depth=2, num_heads=4, num_classes=10
    )
    sd = ref.state_dict()
    path = tmp_path / "vit_imagenet.pth"
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, path)
    cfg = smoke_cfg(
        "DeMo",
        "MODEL.TRANSFORMER_TYPE",
        "tiny_vit",
        "MODEL.TINY.WIDTH",
        "48",
        "MODEL.PRETRAIN_PATH",
        str(path),
    )
    own = build_backbone(cfg).state_dict()
    for k, v in own.items():
        if k == "pos_embed":
            assert torch.allclose(v[0], _bilinear(sd[k][0], (8, 4), 7), atol=1e-6)
        else:
            assert torch.equal(v, sd[k]), k


def test_mismatched_or_missing_backbone_file_fails_clearly(smoke_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        build_backbone(smoke_cfg("DeMo", "MODEL.PRETRAIN_PATH", str(tmp_path / "nope.pt")))
    bad = tmp_path / "wrong_width.pt"
    torch.save(
        {
            "visual.conv1.weight": torch.zeros(32, 3, 8, 8),
            "visual.class_embedding": torch.zeros(32),
        },
        bad,
    )
    with pytest.raises(ValueError, match=r"wrong_width\.pt.*missing.*shape mismatch.*patch_embed"):
        build_backbone(smoke_cfg("DeMo", "MODEL.PRETRAIN_PATH", str(bad)))


def test_our_checkpoint_round_trips_and_mismatch_fails(smoke_cfg, tmp_path):
    cfg = smoke_cfg("DeMo_SDTPS")
    torch.manual_seed(0)
    src = build_model(cfg, 5, 4)
    torch.manual_seed(1)
    dst = build_model(cfg, 5, 4)
    path = tmp_path / "model_0001.pth"
    torch.save({"model": src.state_dict(), "epoch": 1, "optimizer": {}}, path)
    assert load_weights(dst, str(path), cfg) == len(src.state_dict())
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    other = build_model(smoke_cfg("DeMo"), 5, 4)
    with pytest.raises(ValueError, match=r"model_0001\.pth.*(missing|unexpected)"):
        load_weights(other, str(path), cfg)


def test_pretrain_from_our_checkpoint_takes_its_backbone(smoke_cfg, tmp_path):
    """MODEL.PRETRAIN_PATH = a train_net.py checkpoint: its backbone, nothing else, as it was."""
    torch.manual_seed(0)
    src = build_model(smoke_cfg("DeMo_SDTPS"), 5, 4).state_dict()
    path = tmp_path / "model_final.pth"
    torch.save({"model": src, "epoch": 3, "optimizer": {}}, path)
    torch.manual_seed(1)
    fresh = build_model(smoke_cfg("DeMo"), 7, 4).state_dict()
    torch.manual_seed(1)
    dst = build_model(smoke_cfg("DeMo", "MODEL.PRETRAIN_PATH", str(path)), 7, 4).state_dict()
    assert any(k.startswith("backbone.") for k in dst)
    for k, v in dst.items():
        assert torch.equal(v, src[k] if k.startswith("backbone.") else fresh[k]), k
    assert not torch.equal(fresh["backbone.cls_token"], src["backbone.cls_token"])
