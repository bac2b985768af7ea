"""The split transform: workers draw, the device applies; checked against per-image references."""

import math
import random

import numpy as np
import pytest
import torch
from timm.data.random_erasing import RandomErasing

from data.transforms import (
    ERASE_H,
    ERASE_LEFT,
    ERASE_TOP,
    ERASE_W,
    FLIP,
    LEFT,
    TOP,
    BatchTransform,
    draw_augmentation,
)


@pytest.fixture
def cfg(smoke_cfg):
    return smoke_cfg()


def _normalise(cfg, x):
    mean = torch.tensor(cfg.INPUT.PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(cfg.INPUT.PIXEL_STD).view(3, 1, 1)
    return (x.float() / 255 - mean) / std


def _reference(img, flip, top, left, pad):
    """flip -> zero pad -> crop the (H, W) window at (top + pad, left + pad), in numpy."""
    a = img.numpy()
    if flip:
        a = a[:, :, ::-1]
    h, w = a.shape[1:]
    a = np.pad(a, ((0, 0), (pad, pad), (pad, pad)))
    return torch.from_numpy(a[:, top + pad : top + pad + h, left + pad : left + pad + w].copy())


def _batch(images, draws, seed=0):
    return {
        "images": {"RGB": images, "NI": images.flip(0), "TI": images},
        "draws": draws,
        "noise_seed": seed,
    }


def test_flip_crop_normalise_match_reference(cfg):
    gen = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (6, 3, 64, 32), dtype=torch.uint8, generator=gen)
    pad = cfg.INPUT.PADDING
    cases = [(0, 0, 0), (1, 0, 0), (0, -pad, pad), (1, pad, -pad), (1, 2, -3), (0, -1, 1)]
    draws = torch.zeros(6, 3, 8, dtype=torch.long)
    for i, (f, t, lft) in enumerate(cases):
        draws[i, :, FLIP], draws[i, :, TOP], draws[i, :, LEFT] = f, t, lft
    out = BatchTransform(cfg, True)(_batch(imgs, draws))["images"]
    for i, (f, t, lft) in enumerate(cases):
        want = _normalise(cfg, _reference(imgs[i], f, t, lft, pad))
        torch.testing.assert_close(out["RGB"][i], want, rtol=0, atol=1e-5)
        torch.testing.assert_close(
            out["NI"][i],
            _normalise(cfg, _reference(imgs.flip(0)[i], f, t, lft, pad)),
            rtol=0,
            atol=1e-5,
        )


def test_erased_box_is_noise_and_only_the_box(cfg):
    imgs = torch.full((4, 3, 64, 32), 128, dtype=torch.uint8)
    draws = torch.zeros(4, 3, 8, dtype=torch.long)
    draws[1, 0, [ERASE_TOP, ERASE_LEFT, ERASE_H, ERASE_W]] = torch.tensor([10, 5, 30, 20])
    t = BatchTransform(cfg, True)
    out = t(_batch(imgs, draws, seed=3))["images"]
    plain = _normalise(cfg, imgs[0])
    box = torch.zeros(64, 32, dtype=torch.bool)
    box[10:40, 5:25] = True
    rgb = out["RGB"][1]
    assert torch.equal(rgb[:, ~box], plain[:, ~box])
    noise = rgb[:, box]
    assert (noise != plain[:, box]).all()
    assert abs(noise.mean()) < 0.1 and abs(noise.std() - 1) < 0.1
    for m in ("NI", "TI"):  # no box drawn for the other modalities
        assert torch.equal(out[m][1], plain)
    again = t(_batch(imgs, draws, seed=3))["images"]["RGB"]
    assert torch.equal(again, out["RGB"])
    assert not torch.equal(t(_batch(imgs, draws, seed=4))["images"]["RGB"][1], rgb)


@pytest.mark.parametrize("seed", range(20))
def test_erased_box_follows_timm(seed):
    """The worker's box is timm RandomErasing(mode="pixel")'s, draw for draw."""
    rng = random.Random(seed)
    draw = draw_augmentation(rng, (64, 32), flip_prob=0.5, padding=0, erase_prob=0.5)
    state = random.getstate()
    try:
        random.seed(seed)
        random.random()  # the flip
        x = torch.zeros(3, 64, 32)
        RandomErasing(probability=0.5, mode="pixel", device="cpu")(x)
    finally:
        random.setstate(state)
    changed = (x != 0).any(0).nonzero()
    if draw[ERASE_H] == 0:
        assert changed.numel() == 0
    else:
        top, left = changed.min(0).values.tolist()
        bottom, right = changed.max(0).values.tolist()
        assert (top, left, bottom - top + 1, right - left + 1) == tuple(
            draw[c] for c in (ERASE_TOP, ERASE_LEFT, ERASE_H, ERASE_W)
        )


def test_draw_ranges():
    rng = random.Random(1)
    draws = [draw_augmentation(rng, (256, 128), 0.5, 10, 0.5) for _ in range(2000)]
    flips = [d[FLIP] for d in draws]
    assert 0.45 < sum(flips) / len(flips) < 0.55
    assert {d[TOP] for d in draws} == set(range(-10, 11)) == {d[LEFT] for d in draws}
    erased = [d for d in draws if d[ERASE_H] > 0]
    assert 0.45 < len(erased) / len(draws) < 0.55
    for d in erased:
        area = d[ERASE_H] * d[ERASE_W] / (256 * 128)
        assert 0.015 < area < 0.34 and d[ERASE_TOP] + d[ERASE_H] <= 256
        assert d[ERASE_LEFT] + d[ERASE_W] <= 128
        assert math.log(0.25) < math.log(d[ERASE_H] / d[ERASE_W]) < math.log(4)


def test_test_time_and_float_batches(cfg):
    imgs = torch.randint(0, 256, (2, 3, 64, 32), dtype=torch.uint8)
    out = BatchTransform(cfg, False)({"images": {"RGB": imgs, "NI": imgs, "TI": imgs}})
    torch.testing.assert_close(out["images"]["TI"], _normalise(cfg, imgs), rtol=0, atol=1e-5)
    again = BatchTransform(cfg, True)(out)  # float: already normalised, passed through
    assert again["images"]["TI"] is out["images"]["TI"]


def test_read_pixels_is_the_pil_path(smoke_cfg, monkeypatch):
    """JPEGs are decoded by torchvision with PIL's pixels, once (another size is resized by PIL
    from them); the RGBNT100 strips go through PIL."""
    from data import build_dataset, transforms
    from data.datasets import read_images

    cfg = smoke_cfg()
    size = tuple(cfg.INPUT.SIZE_TRAIN)
    rec = build_dataset(cfg).train[0]
    want = {m: transforms.to_uint8(im, size) for m, im in read_images(rec).items()}
    with monkeypatch.context() as mp:  # the fast path must not need PIL
        mp.setattr(transforms, "read_images", None)
        got = transforms.read_pixels(rec, size)
    assert all(torch.equal(got[m], want[m]) for m in want)
    bigger = (size[0] * 2, size[1] * 2)
    with monkeypatch.context() as mp:  # no second decode by PIL
        mp.setattr(transforms, "read_images", None)
        got = transforms.read_pixels(rec, bigger)
    assert all(
        torch.equal(got[m], transforms.to_uint8(im, bigger)) for m, im in read_images(rec).items()
    )
    strip = build_dataset(smoke_cfg("DATASETS.NAMES", "RGBNT100")).train[0]
    got = transforms.read_pixels(strip, size)
    assert all(
        torch.equal(got[m], transforms.to_uint8(im, size)) for m, im in read_images(strip).items()
    )
