"""Image decoding: 16-bit, 32-bit, palette, alpha, CMYK and 1-bit files of known values, refused
modes, and the RGBNT100 strip geometry."""

import numpy as np
import pytest
from PIL import Image

from data import DatasetError, Record
from data.datasets import read_images
from data.transforms import read_pixels

MODS = ("RGB", "NI", "TI")


def _record(path, strip=False):
    return Record(
        {m: str(path) for m in MODS},
        1,
        0,
        key=str(path),
        strip_index={m: i for i, m in enumerate(MODS)} if strip else {},
    )


def _pixels(path):
    """(H, W, 3) uint8 of the RGB modality of a one-file record."""
    img = read_images(_record(path))["RGB"]
    assert img.mode == "RGB"
    return np.asarray(img)


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16_bit_scaled_by_its_range(tmp_path, ext):
    # v * 255 / 65535, rounded: 32768 -> 127.5 -> 128; 65535 -> 255 (convert("RGB") clips >= 255
    # to white, so 257, 32768 and 65535 all read 255 there).
    path = tmp_path / f"gray16.{ext}"
    Image.fromarray(np.array([[0, 257, 32768, 65535]], np.uint16)).save(path)
    with Image.open(path) as im:
        assert im.mode == "I;16"
    got = _pixels(path)
    assert got.shape == (1, 4, 3)
    np.testing.assert_array_equal(got[0, :, 0], [0, 1, 128, 255])
    assert (got == got[..., :1]).all()  # gray: three equal channels


def test_16_bit_big_endian(tmp_path):
    from data.datasets.base import to_rgb

    img = Image.fromarray(np.array([[0, 32768, 65535]], ">u2"))
    assert img.mode == "I;16B"
    np.testing.assert_array_equal(np.asarray(to_rgb(img, "x"))[0, :, 1], [0, 128, 255])


def test_32_bit_integer_read_as_16_bit_and_refused_outside(tmp_path):
    path = tmp_path / "int32.tif"
    Image.fromarray(np.array([[0, 257, 32768, 65535]], np.int32)).save(path)
    with Image.open(path) as im:
        assert im.mode == "I"
    np.testing.assert_array_equal(_pixels(path)[0, :, 2], [0, 1, 128, 255])
    bad = tmp_path / "int32_big.tif"
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(bad)
    with pytest.raises(DatasetError, match=r"int32_big\.tif.*0\.\.70000.*0\.\.65535"):
        read_images(_record(bad))


def test_float_read_in_0_1_and_refused_outside(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(path)
    np.testing.assert_array_equal(_pixels(path)[0, :, 0], [0, 128, 255])
    bad = tmp_path / "kelvin.tif"
    Image.fromarray(np.array([[290.0, 310.5]], np.float32)).save(bad)
    with pytest.raises(DatasetError, match=r"kelvin\.tif.*290.*310\.5.*outside 0\.\.1"):
        read_images(_record(bad))


def test_alpha_composited_over_black(tmp_path):
    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 0], [200, 100, 50, 128]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(
        _pixels(tmp_path / "rgba.png")[0], [[200, 100, 50], [0, 0, 0], [100, 50, 25]]
    )
    la = np.array([[[200, 255], [200, 0], [200, 128]]], np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(_pixels(tmp_path / "la.png")[0, :, 0], [200, 0, 100])


def test_palette_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (3, 1))
    pal.putpalette([10, 20, 30, 200, 150, 100, 0, 255, 0] + [0] * (256 * 3 - 9))
    pal.putdata([0, 1, 2])
    pal.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(
        _pixels(tmp_path / "pal.png")[0], [[10, 20, 30], [200, 150, 100], [0, 255, 0]]
    )
    pal.save(tmp_path / "pal_t.png", transparency=1)  # palette entry 1 fully transparent
    np.testing.assert_array_equal(
        _pixels(tmp_path / "pal_t.png")[0], [[10, 20, 30], [0, 0, 0], [0, 255, 0]]
    )


def test_cmyk_and_1_bit(tmp_path):
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255]]], np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(
        _pixels(tmp_path / "cmyk.tif")[0], [[255, 255, 255], [0, 255, 255], [0, 0, 0]]
    )
    Image.fromarray(np.array([[0, 1, 1, 0]], bool)).save(tmp_path / "bits.png")
    with Image.open(tmp_path / "bits.png") as im:
        assert im.mode == "1"
    np.testing.assert_array_equal(_pixels(tmp_path / "bits.png")[0, :, 0], [0, 255, 255, 0])


def test_unsupported_mode_is_refused_by_name(tmp_path):
    from data.datasets.base import to_rgb

    img = Image.new("HSV", (2, 2))
    with pytest.raises(DatasetError, match=r"odd\.png: image mode HSV is not supported"):
        to_rgb(img, "odd.png")


def test_16_bit_through_the_loader_path(tmp_path):
    path = tmp_path / "gray16.png"
    Image.fromarray(np.full((8, 4), 32768, np.uint16)).save(path)
    out = read_pixels(_record(path), (8, 4))
    assert set(out) == set(MODS) and out["NI"].shape == (3, 8, 4)
    assert int(out["NI"].min()) == int(out["NI"].max()) == 128


def _strip(path, w, h):
    x = np.zeros((h, w, 3), np.uint8)
    x[:, : w // 3] = 10
    x[:, w // 3 : 2 * (w // 3)] = 20
    x[:, 2 * (w // 3) :] = 30
    Image.fromarray(x).save(path)


def test_strip_cut_into_three_equal_parts(tmp_path):
    _strip(tmp_path / "0001_c0001_000.png", 192, 32)
    parts = read_images(_record(tmp_path / "0001_c0001_000.png", strip=True))
    assert [im.size for im in parts.values()] == [(64, 32)] * 3
    assert [int(np.asarray(im).mean()) for im in parts.values()] == [10, 20, 30]


@pytest.mark.parametrize("w", [190, 96, 64])  # not a multiple of 3; thirds too narrow; one part
def test_strip_of_wrong_width_refused_by_name(tmp_path, w):
    path = tmp_path / "0001_c0001_001.png"
    _strip(path, w, 32)
    with pytest.raises(DatasetError) as err:
        read_images(_record(path, strip=True))
    msg = str(err.value)
    assert str(path) in msg and f"{w}x32" in msg and "192" in msg and "\n" not in msg
