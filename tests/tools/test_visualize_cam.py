"""Grad-CAM (engine/cam.py) on constructed cases, and tools/visualize_cam.py on 1-epoch smoke
checkpoints."""

import os

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from engine import cam as gc
from tools import visualize_cam
from utils import visualize as vis

MODS = ("RGB", "NI", "TI")
GRID, PATCH = (8, 4), 8
# Patch cells (row, col) of the one region each modality's score reads.
REGIONS = {
    "RGB": [(1, 0), (1, 1), (2, 0), (2, 1)],
    "NI": [(4, 2), (4, 3), (5, 2), (5, 3)],
    "TI": [(6, 1), (7, 1), (6, 2), (7, 2)],
}


def test_grad_cam_hand_computed():
    acts = torch.tensor([[[1.0, 2.0], [3.0, -4.0]]])  # (B=1, N=2, C=2)
    grads = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # channel weights (1, 0.5)
    # patch 0: 1 * 1 + 0.5 * 2 = 2; patch 1: 3 - 2 = 1
    torch.testing.assert_close(gc.grad_cam(acts, grads), torch.tensor([[2.0, 1.0]]))
    # negative evidence is cut by the ReLU
    torch.testing.assert_close(gc.grad_cam(acts, -grads), torch.tensor([[0.0, 0.0]]))


def test_cam_to_image_puts_each_patch_on_its_window():
    cam = torch.zeros(1, 32)
    cam[0, 4 * 5 + 2] = 1.0  # row 5, column 2 of the 8 x 4 grid
    img = gc.cam_to_image(cam, GRID, (8, 8), (8, 8), (64, 32))
    assert img.shape == (1, 64, 32)
    y, x = np.unravel_index(int(img[0].argmax()), (64, 32))
    assert 40 <= y < 48 and 16 <= x < 24
    # a constant map stays constant, borders included
    flat = gc.cam_to_image(torch.full((2, 32), 0.5), GRID, (8, 8), (8, 8), (64, 32))
    torch.testing.assert_close(flat, torch.full((2, 64, 32), 0.5))
    # overlapping patches (stride 6 < patch 8 on 20 x 14: a 3 x 2 grid): the values sit at the
    # window centres 4 + 6 r, 4 + 6 c
    grid = torch.arange(6, dtype=torch.float32)[None]
    over = gc.cam_to_image(grid, (3, 2), (8, 8), (6, 6), (20, 14))[0]
    assert over.shape == (20, 14)
    # pixel (y=9, x=9) has its centre at 9.5 = 4 + 6 * (11 / 12): between rows 0 and 1, columns 0
    # and 1
    assert float(over[9, 9]) == pytest.approx(0 + 2 * 11 / 12 + 11 / 12)


class RegionModel(nn.Module):
    """A MultiModalReID stand-in: patch embedding -> one block (the hooked one) -> per modality,
    the mean of the block's tokens over that modality's region only, as its "ori" slice."""

    def __init__(self, width=32):
        super().__init__()
        torch.manual_seed(0)
        self.modalities, self.num_patches = MODS, GRID[0] * GRID[1]
        self.backbone = nn.Module()
        self.backbone.embed = nn.Conv2d(3, width, PATCH, PATCH, bias=False)
        self.backbone.blocks = nn.Sequential(nn.Linear(width, width, bias=False))
        self.cls = nn.Parameter(torch.zeros(1, 1, width))

    def forward(self, batch):
        x = torch.cat([batch["images"][m] for m in MODS])
        b = x.shape[0] // len(MODS)
        t = self.backbone.embed(x).flatten(2).transpose(1, 2)
        t = self.backbone.blocks(torch.cat([self.cls.expand(len(t), -1, -1), t], dim=1))
        per = t[:, 1:].split(b)
        idx = {m: [r * GRID[1] + c for r, c in REGIONS[m]] for m in MODS}
        return {"ori": torch.cat([p[:, idx[m]].mean(dim=1) for p, m in zip(per, MODS)], dim=1)}


def region_batch(b=2):
    """Noise images with a bright block over each modality's region (the same for every
    sample); the score reads that region only."""
    g = torch.Generator().manual_seed(1)
    images = {}
    for m in MODS:
        x = 0.3 * torch.randn(b, 3, 64, 32, generator=g)
        for r, c in REGIONS[m]:
            x[:, :, r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH] += 2.0
        images[m] = x
    return {"images": images, "index": torch.arange(b)}


def test_cam_is_brightest_where_the_score_looks():
    model = RegionModel()
    refs = torch.full((2, 3 * 32), float("nan"))  # no gallery match: own-direction target
    cams, scores = gc.block_cams(model, region_batch(), gc.similarity_score(1, refs))
    assert scores.shape == (2,) and bool((scores > 0).all())
    for m in MODS:
        img = gc.cam_to_image(cams[m], GRID, (PATCH, PATCH), (PATCH, PATCH), (64, 32))
        inside = torch.zeros(64, 32, dtype=torch.bool)
        for r, c in REGIONS[m]:
            inside[r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH] = True
        for b in range(2):
            y, x = np.unravel_index(int(img[b].argmax()), (64, 32))
            assert inside[y, x], f"{m}: hottest pixel ({y}, {x}) outside its region"
            assert float(img[b][inside].mean()) > 5 * float(img[b][~inside].mean())


def test_similarity_target_gradient_is_the_cosine_gradient():
    f = torch.tensor([[3.0, 4.0]], requires_grad=True)
    ref = torch.tensor([[1.0, 0.0]])
    score = gc.similarity_score(1, ref)({"ori": f}, {"index": torch.tensor([0])})
    (grad,) = torch.autograd.grad(score.sum(), f)
    assert score.item() == pytest.approx(0.6)
    # d cos / d f = ref / |f| - cos f / |f|^2
    torch.testing.assert_close(grad, torch.tensor([[0.2 - 0.6 * 3 / 25, -0.6 * 4 / 25]]))
    own = gc.similarity_score(1, torch.full((1, 2), float("nan")))(
        {"ori": f}, {"index": torch.tensor([0])}
    )
    (grad,) = torch.autograd.grad(own.sum(), f)
    assert own.item() == pytest.approx(5.0)  # |f|, with gradient f / |f| (not 0)
    torch.testing.assert_close(grad, torch.tensor([[0.6, 0.8]]))


@pytest.mark.parametrize("config,joint", [("DeMo.yml", "True"), ("DeMo_SDTPS.yml", "False")])
def test_pattern_logits_are_the_training_heads(smoke_cfg, config, joint):
    """The heads the training loss applies (meta_arch: one on [R; N; T] with MODEL.JOINT_ORI_HEAD,
    one per modality on its class token otherwise; the fused head on fused), from the eval
    features."""
    from modeling import build_model

    cfg = smoke_cfg("MODEL.JOINT_ORI_HEAD", joint, config=config)
    model = build_model(cfg, 8, 3).eval()
    g = torch.Generator().manual_seed(0)
    batch = {
        "images": {m: torch.randn(2, 3, 64, 32, generator=g) for m in MODS},
        "camids": torch.tensor([0, 2]),
    }
    with torch.no_grad():
        globals_, ori, fused, _ = model.encode(batch)
        feats = model(batch)
        if joint == "True":
            ori_logits = model.ori_heads[0](ori)
        else:
            assert len(model.ori_heads) == 3
            ori_logits = sum(h(x) for h, x in zip(model.ori_heads, globals_))
        torch.testing.assert_close(gc.pattern_logits(model, feats, 1), ori_logits)
        torch.testing.assert_close(
            gc.pattern_logits(model, feats, 3), ori_logits + model.fused_head(fused)
        )
        score = gc.logit_score(model, 2, torch.tensor([5, 1]))(feats, {"index": torch.arange(2)})
        torch.testing.assert_close(score, model.fused_head(fused)[[0, 1], [5, 1]])


@pytest.mark.parametrize("config", ["DeMo.yml", "DeMo_SDTPS.yml"])
def test_visualize_cam_writes_pictures(smoke_checkpoint, tmp_path, capsys, config):
    args = smoke_checkpoint(config)
    paths = visualize_cam.main([*args, "--num", "3", "--out", str(tmp_path)])
    assert len(paths) == 3 and sorted(os.listdir(tmp_path)) == sorted(map(os.path.basename, paths))
    # spread over identities: the file names start with the raw id
    assert len({os.path.basename(p).split("_")[1] for p in paths}) == 3
    assert "target: cosine to its best same-id gallery match" in capsys.readouterr().out
    with Image.open(paths[0]) as im:
        pic = np.asarray(im.convert("RGB"), dtype=float)
    assert pic.shape[0] >= 2 * 192 and pic.shape[1] >= 3 * 96
    # the RGB map (second row, below the 20 px title and two 34 px headers) is not flat
    rgb_map = pic[20 + 34 + 192 + 34 + 4 : 20 + 34 + 192 + 34 + 188, 16 : 16 + 96]
    assert rgb_map.std() > 5


def test_visualize_cam_train_split_and_missing_modality(smoke_checkpoint, tmp_path, capsys):
    args = smoke_checkpoint("DeMo_SDTPS.yml")
    paths = visualize_cam.main(
        [
            *args,
            "--num",
            "2",
            "--split",
            "train",
            "--pattern",
            "2",
            "TEST.MISSING_MODALITIES",
            "NI",
            "--out",
            str(tmp_path),
        ]
    )
    assert "target: classifier logit of its own id" in capsys.readouterr().out
    with Image.open(paths[0]) as im:
        pic = np.asarray(im.convert("RGB"))
    ni_x = 16 + 96 + 16  # second column
    for top in (4 + 20 + 34, 4 + 20 + 34 + 192 + 34):  # both rows of NI are the grey panel
        assert tuple(pic[top + 10, ni_x + 10]) == vis.MISSING
    assert tuple(pic[4 + 20 + 34 + 10, 16 + 10]) != vis.MISSING  # RGB is shown


def test_visualize_cam_unavailable_pattern(sdtps_args, tmp_path):
    with pytest.raises(SystemExit, match="--pattern 4 is not available"):
        visualize_cam.main([*sdtps_args, "--pattern", "4", "--out", str(tmp_path)])


def test_visualize_cam_needs_a_triplet(sdtps_args, capsys):
    with pytest.raises(SystemExit):
        visualize_cam.main([*sdtps_args, "--num", "0"])
    assert "--num 0: give at least 1" in capsys.readouterr().err
