"""Learnable synthetic RGBNT201 / RGBNT100 / MSVR310 / WMVEID863 sets in the real on-disk layouts.

Identity cues are split across the modalities: each identity has a code (c_rgb, c_ni, c_ti), each
component one of 6 values, the triple unique (6^3 = 216 identities at most). RGB shows c_rgb as the
colours of the upper and lower body, NI as a bright/dark layout of three horizontal body bands, TI
as heat blobs on those bands. A single component is shared by many identities, so a model that
misses a modality confuses the identities that differ only there. All cues are horizontal bands
(they survive flips) about a third of the body high (they survive a 64x32 resize, JPEG, crops and
erasing). Cameras change background, light (gain, colour cast) and pose (shift and scale of the
body); every image adds its own jitter, background clutter and noise.

`hardness` (0 by default, the demo's set) makes the cues ambiguous in some images: every image
shifts each body band of each modality by its own random offset, up to `hardness` times about
the gap between two cue values (90 per RGB channel, 110 NI grey levels, 0.8 of TI heat). Unlike
pixel noise, a band-wide offset is not averaged away, so at hardness 0.5-1 some images read as
another code and a converged model stays below mAP 100: a benchmark that does not saturate.

Everything is seeded: the same (name, scale, seed, overrides) writes the same files, whatever the
number of worker processes (each image draws from its own generator).
"""

import json
import logging
import os
from functools import lru_cache
from multiprocessing import get_context

import numpy as np
from PIL import Image

from .datasets.rgbnt100 import PART_ASPECT

logger = logging.getLogger(__name__)

PALETTE = np.array(
    [[205, 40, 40], [40, 170, 60], [50, 70, 210], [225, 205, 40], [190, 50, 185], [40, 185, 195]],
    np.float32,
)
# Six bright/dark layouts of three bands; NI and TI use them in different orders.
BANDS = np.array([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1)], np.float32)
TI_ORDER = (3, 5, 1, 4, 0, 2)

# Real counts: (ids, images) per split; query None = the gallery split is also the query (RGBNT201).
# WMVEID863 takes MSVR310's counts (a vehicle set of the same vis/ni/th, 8-view, scene-named
# kind): its own split counts are not recorded here, and its 863 ids exceed the 216 codes anyway.
# New datasets go at the end: a dataset's manifest stream is seeded by its position here.
DATASETS = {
    "RGBNT201": dict(
        size=(256, 128),
        vehicle=False,
        train=(171, 3951),
        gallery=(30, 836),
        query=None,
        cams=range(1, 5),
        id_pool=201,
    ),
    "RGBNT100": dict(
        size=(128, 256),
        vehicle=True,
        train=(50, 8675),
        gallery=(50, 8575),
        query=(50, 1715),
        cams=range(1, 9),
        id_pool=600,
    ),
    "MSVR310": dict(
        size=(128, 256),
        vehicle=True,
        train=(155, 1032),
        gallery=(52, 1055),
        query=(52, 591),
        cams=range(0, 8),
        id_pool=310,
    ),
    "WMVEID863": None,  # MSVR310's layout and counts (below), its own identity pool
}
DATASETS["WMVEID863"] = dict(DATASETS["MSVR310"], id_pool=863)
MAX_IDS = len(PALETTE) * len(BANDS) * len(TI_ORDER)


def plan_counts(name, scale=1.0, train_ids=None, test_ids=None, images_per_id=None):
    """{split: {"ids", "images"}} that make_synthetic writes; splits train, gallery[, query].

    Ids and images scale together; floors: >= 8 train ids with >= 4 images each, >= 3 test ids with
    >= 2 gallery images each (in two cameras or scenes) and >= 1 query each.
    """
    spec = DATASETS[name]
    n_tr = train_ids or max(8, int(round(spec["train"][0] * scale)))
    n_te = test_ids or max(3, int(round(spec["gallery"][0] * scale)))
    if n_tr + n_te > min(MAX_IDS, spec["id_pool"]):
        most = min(MAX_IDS, spec["id_pool"])
        raise ValueError(f"{name}: {n_tr + n_te} ids asked, at most {most}")
    real = {k: spec[k] for k in ("train", "gallery", "query") if spec[k]}
    ids = {"train": n_tr, "gallery": n_te, "query": n_te}
    floor = {"train": 4, "gallery": 2, "query": 1}
    out = {}
    for split, (_, r_imgs) in real.items():
        if images_per_id:
            per = images_per_id * (r_imgs / real["gallery"][1] if split == "query" else 1)
            n = int(round(ids[split] * per))
        else:
            n = int(round(r_imgs * scale))
        out[split] = {"ids": ids[split], "images": max(n, floor[split] * ids[split])}
    return out


def _alloc(total, n, floor, rng):
    """n counts >= floor summing to total, unevenly spread like real per-id counts."""
    p = rng.uniform(0.5, 1.5, n)
    return floor + rng.multinomial(total - n * floor, p / p.sum())


def _file_names(name, pid, cam, scene, j, split_dir):
    if name == "RGBNT201":
        f = f"{pid:06d}_cam{cam}_{j // 100}_{j % 100:02d}.jpg"
        return [os.path.join("RGBNT201", split_dir, m, f) for m in ("RGB", "NI", "TI")]
    if name == "RGBNT100":
        return [os.path.join("RGBNT100", "rgbir", split_dir, f"{pid:04d}_c{cam:04d}_{j:03d}.jpg")]
    # MSVR310 and WMVEID863: <split>/<id>/{vis,ni,th}/VVVV_sSSS_vK_NNN.jpg
    f = f"{pid:04d}_s{scene:03d}_v{cam}_{j:03d}.jpg"
    return [os.path.join(name, split_dir, f"{pid:04d}", m, f) for m in ("vis", "ni", "th")]


SPLIT_DIRS = {
    "RGBNT201": {"train": "train_171", "gallery": "test"},
    "RGBNT100": {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query"},
    "MSVR310": {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query3"},
    "WMVEID863": {"train": "train", "gallery": "test", "query": "query"},
}


def build_manifest(name, counts, seed=0):
    """One dict per image to write: n (seed index), code, cam, files (paths relative to root).

    Every test id gets its first two gallery images in two different cameras (and, for MSVR310 and
    WMVEID863, two different scenes of its 2-3); its queries use the same cameras / scenes, so each
    query has a valid match under either protocol.
    """
    spec = DATASETS[name]
    rng = np.random.default_rng([seed, 4242, list(DATASETS).index(name)])
    n_tr, n_te = counts["train"]["ids"], counts["gallery"]["ids"]
    pool = rng.permutation(np.arange(1, spec["id_pool"] + 1))[: n_tr + n_te]
    split_ids = {"train": sorted(pool[:n_tr]), "gallery": sorted(pool[n_tr:])}
    split_ids["query"] = split_ids["gallery"]
    codes = rng.choice(MAX_IDS, n_tr + n_te, replace=False)
    code_of = {int(p): (c // 36, c // 6 % 6, c % 6) for p, c in zip(pool, codes)}
    cams = list(spec["cams"])
    top = min(5, len(cams)) + 1
    subsets = {int(p): rng.permutation(cams)[: rng.integers(2, top)] for p in pool}
    scenes = {int(p): rng.choice(np.arange(1, 61), rng.integers(2, 4), replace=False) for p in pool}
    if name == "RGBNT201":
        subsets.update({int(p): np.array([1, 2]) for p in split_ids["gallery"]})
    manifest, seq = [], dict.fromkeys(code_of, 0)
    for split, info in counts.items():
        ids = [int(p) for p in split_ids[split]]
        floor = {"train": 4, "gallery": 2, "query": 1}[split]
        for pid, n in zip(ids, _alloc(info["images"], len(ids), floor, rng)):
            cam_list = list(subsets[pid][:2]) + list(rng.choice(subsets[pid], n))
            scene_list = list(scenes[pid][:2]) + list(rng.choice(scenes[pid], n))
            if split == "query":
                cam_list, scene_list = cam_list[2:], scene_list[2:]
            for cam, scene in zip(cam_list[:n], scene_list[:n]):
                files = _file_names(
                    name, pid, int(cam), int(scene), seq[pid], SPLIT_DIRS[name][split]
                )
                seq[pid] += 1
                manifest.append(dict(n=len(manifest), code=code_of[pid], cam=int(cam), files=files))
    return manifest


@lru_cache(maxsize=256)
def _camera(seed, cam):
    """Fixed look of one camera: background, light and pose."""
    r = np.random.default_rng([seed, 7919, cam])
    return dict(
        bg=r.uniform(50, 200, 3),
        ni_bg=r.uniform(30, 110),
        ti_bg=r.uniform(15, 60),
        gain=r.uniform(0.75, 1.2),
        cast=r.uniform(-20, 20, 3),
        dx=r.uniform(-0.08, 0.08),
        dy=r.uniform(-0.04, 0.04),
        scale=r.uniform(0.82, 1.0),
    )


def _clutter(img, rng, n=2):
    """Background rectangles of random tone (drawn before the body)."""
    h, w = img.shape[:2]
    for _ in range(n):
        y, x = rng.integers(0, h), rng.integers(0, w)
        img[y : y + rng.integers(h // 8, h // 3 + 2), x : x + rng.integers(w // 8, w // 3 + 2)] = (
            rng.uniform(30, 220, img.shape[2])
        )


def render_triplet(code, cam, hw, vehicle, rng, seed=0, hardness=0.0):
    """(rgb, ni, ti) uint8 arrays of shape (H, W, 3) for one identity code seen by camera `cam`.

    hardness > 0 adds per-image, per-band cue offsets (module docstring); 0 draws nothing extra,
    so the default images stay the same.
    """
    h, w = hw
    c = _camera(seed, cam)
    # float32 throughout: half the memory traffic of numpy's float64 default.
    yy = ((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None]
    xx = ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, :]
    s = c["scale"] * rng.uniform(0.92, 1.08)
    bh, bw = (0.62 * s, 0.82 * s) if vehicle else (0.86 * s, 0.44 * s)
    top = 0.5 + c["dy"] + rng.uniform(-0.04, 0.04) - bh / 2
    left = 0.5 + c["dx"] + rng.uniform(-0.06, 0.06) - bw / 2
    v, u = (yy - top) / bh, (xx - left) / bw
    inside = ((v >= 0) & (v < 1) & (u >= 0) & (u < 1))[..., None]
    band = np.clip((v * 3).astype(int), 0, 2)[:, 0]
    gain = c["gain"] * rng.uniform(0.88, 1.12)
    # Cue offsets, band x (R, G, B, NI, TI); none drawn at hardness 0 (the default images).
    shift = rng.uniform(-hardness, hardness, (3, 5)) if hardness else np.zeros((3, 5), np.float32)
    rgb_off, ni_off, ti_off = 90 * shift[:, :3], 110 * shift[:, 3], 0.8 * shift[:, 4]

    bg = np.empty((h, w, 3), np.float32)
    bg[:] = c["bg"] + 40 * (yy[..., None] - 0.5)
    _clutter(bg, rng)
    body = np.where((band < 2)[:, None], PALETTE[code[0]], PALETTE[(code[0] + 3) % 6])
    body = body + rgb_off[band]
    rgb = np.where(inside, body[:, None, :], bg) * gain + c["cast"]

    ni_bg = np.full((h, w, 1), c["ni_bg"], np.float32)
    _clutter(ni_bg, rng)
    level = BANDS[code[1]][band][:, None, None]
    level = level + (ni_off[band] / 150)[:, None, None]
    ni_body = 75 + 150 * level + 12 * np.sin(2 * np.pi * 4 * u)[..., None]
    ni = np.where(inside, ni_body, ni_bg) * gain

    ti_bg = np.full((h, w, 1), c["ti_bg"], np.float32)
    _clutter(ti_bg, rng, n=1)
    on = np.clip(BANDS[TI_ORDER[code[2]]] + ti_off, 0, 1)
    # exp(-a - b) = exp(-a) exp(-b): separable, so only (H, 1) and (1, W) exponentials.
    rows = sum(on[k] * np.exp(-((v - (k + 0.5) / 3) ** 2) / 0.012) for k in range(3))
    heat = rows * np.exp(-((u - 0.5) ** 2) / 0.09)
    ti = np.where(inside, 85 + 160 * np.minimum(heat, 1.0)[..., None], ti_bg)
    ti = ti * (0.5 + 0.5 * gain)

    out = []
    for img in (rgb, ni, ti):
        img = img + _noise(img.shape, rng)
        out.append(np.broadcast_to(np.clip(img, 0, 255), (h, w, 3)).astype(np.uint8))
    return tuple(out)


_NOISE = np.random.default_rng(12345).normal(0, 7, (512, 1024, 3)).astype(np.float32)


def _noise(shape, rng):
    """Gaussian noise (sigma 7) cut from a fixed bank at a random offset (faster than drawing)."""
    h, w, c = shape
    y, x = rng.integers(0, _NOISE.shape[0] - h + 1), rng.integers(0, _NOISE.shape[1] - w + 1)
    return _NOISE[y : y + h, x : x + w, :c]


def _write(job):
    """Render one manifest entry and write its file(s)."""
    root, name, seed, size_factor, hardness, item = job
    spec = DATASETS[name]
    h, w = (max(8, int(round(d * size_factor))) for d in spec["size"])
    if name == "RGBNT100":  # parts exactly PART_ASPECT x their height, as the reader requires
        w = PART_ASPECT * h
    rng = np.random.default_rng([seed, item["n"]])
    imgs = render_triplet(item["code"], item["cam"], (h, w), spec["vehicle"], rng, seed, hardness)
    if name == "RGBNT100":
        imgs = [np.concatenate(imgs, axis=1)]
    for img, rel in zip(imgs, item["files"]):
        path = os.path.join(root, rel)
        Image.fromarray(img).save(path, quality=90)


def make_synthetic(root, name, workers=None, **params):
    """Write the synthetic `name` dataset under root/<name> in its real layout; `params` are those
    of `made_with` (its defaults apply), `workers` the processes that render (default: all cores).

    Returns plan_counts(...): {split: {"ids": n, "images": n}}. The set's parameters are written
    last, to root/<name>/synthetic.json (PARAMS_FILE): a folder that has it is complete, and says
    how it was made (`check_params`).
    """
    p = made_with(name, **params)
    if not 0 <= p["hardness"] <= 1:
        raise ValueError(f"hardness {p['hardness']}: must be between 0 and 1")
    counts = plan_counts(name, p["scale"], p["train_ids"], p["test_ids"], p["images_per_id"])
    manifest = build_manifest(name, counts, p["seed"])
    for folder in sorted(
        {os.path.dirname(os.path.join(root, f)) for it in manifest for f in it["files"]}
    ):
        os.makedirs(folder, exist_ok=True)
    jobs = [(root, name, p["seed"], p["size_factor"], p["hardness"], it) for it in manifest]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(jobs) > 200:
        with get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(_write, jobs, chunksize=64):
                pass
    else:
        for job in jobs:
            _write(job)
    with open(os.path.join(root, name, PARAMS_FILE), "w") as f:
        json.dump({**p, "counts": counts}, f, indent=1)
    logger.info("wrote synthetic %s under %s: %s", name, root, counts)
    return counts


PARAMS_FILE = "synthetic.json"


def made_with(
    name,
    scale=1.0,
    seed=0,
    train_ids=None,
    test_ids=None,
    images_per_id=None,
    size_factor=1.0,
    hardness=0.0,
):
    """The parameters that define a synthetic set's pixels (what PARAMS_FILE records).

    scale: fraction of the real id and image counts (1 = real counts; floors keep tiny sets usable).
    train_ids / test_ids / images_per_id: explicit overrides for tiny sets. size_factor: multiplies
    the real image size (1 = 256x128 persons, 768x128 strips, 128x256 vehicles). hardness: cue
    ambiguity, 0 to 1 (module docstring).
    """
    return dict(
        dataset=name,
        scale=float(scale),
        seed=int(seed),
        train_ids=train_ids,
        test_ids=test_ids,
        images_per_id=images_per_id,
        size_factor=float(size_factor),
        hardness=float(hardness),
    )


def read_params(root, name):
    """The parameters root/<name>/PARAMS_FILE records, or None (no such file: not a finished
    synthetic set)."""
    try:
        with open(os.path.join(root, name, PARAMS_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def check_params(root, name, **wanted):
    """Whether root/<name> already holds the synthetic set `made_with(name, **wanted)` describes.

    True when its PARAMS_FILE records exactly those parameters; False when root/<name> does not
    exist; ValueError, naming the file and the values, when it holds another set, an unfinished
    one, or a folder this generator did not write.
    """
    folder = os.path.join(root, name)
    if not os.path.exists(folder):
        return False
    have = read_params(root, name)
    if have is None:
        raise ValueError(
            f"{folder} exists but {os.path.join(folder, PARAMS_FILE)} is missing or unreadable: "
            "not a finished set of this generator; remove the folder first"
        )
    want = made_with(name, **wanted)
    diff = [f"{k} {have.get(k)!r} (asked: {v!r})" for k, v in want.items() if have.get(k) != v]
    if diff:
        raise ValueError(
            f"{folder} holds another synthetic set; {os.path.join(folder, PARAMS_FILE)} records "
            + ", ".join(diff)
            + ": remove the folder or choose another root"
        )
    return True
