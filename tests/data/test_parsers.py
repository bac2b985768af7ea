"""File-name rules of the three datasets, on good and bad names."""

import pytest

from data.datasets import msvr310, rgbnt100, rgbnt201


@pytest.mark.parametrize(
    "name, expected",
    [
        ("000123_cam3_0_05.jpg", (123, 2, -1)),
        ("000001_cam1_0_00.jpg", (1, 0, -1)),
        ("000201_cam4_1_17.jpg", (201, 3, -1)),
    ],
)
def test_rgbnt201_good(name, expected):
    assert rgbnt201.parse_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "cam3_000123.jpg",
        "000123_cam5_0_05.jpg",
        "000123_cam0_0.jpg",
        "abc_cam1_0_00.jpg",
        "000123-cam3-0-05.jpg",
    ],
)
def test_rgbnt201_bad(name):
    with pytest.raises(ValueError, match="cam"):
        rgbnt201.parse_name(name)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("0561_c0001_006.jpg", (561, 0, -1)),
        ("0561_c8_006.jpg", (561, 7, -1)),
        ("12_c003_1.jpg", (12, 2, -1)),
    ],
)
def test_rgbnt100_good(name, expected):
    assert rgbnt100.parse_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "0561_0001_006.jpg",
        "0561_c0009_006.jpg",
        "0561_c0000_006.jpg",
        "x561_c0001_006.jpg",
        "0561_c0001.jpg",
    ],
)
def test_rgbnt100_bad(name):
    with pytest.raises(ValueError):
        rgbnt100.parse_name(name)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("0012_s003_v5_041.jpg", (12, 5, 3)),
        ("0310_s120_v0_000.jpg", (310, 0, 120)),
    ],
)
def test_msvr310_good(name, expected):
    assert msvr310.parse_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "12_s003_v5_041.jpg",
        "0012_s03_v5_041.jpg",
        "0012_s003_v8_041.jpg",
        "0012_s003_5_041.jpg",
        "0012-s003-v5-041.jpg",
    ],
)
def test_msvr310_bad(name):
    with pytest.raises(ValueError):
        msvr310.parse_name(name)
