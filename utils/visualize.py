"""Pictures of what a model does, drawn with PIL (no matplotlib): SDTPS token-selection maps, rank
lists and class-activation maps, and the choice of which test triplets to show. Shared by
tools/visualize_tokens.py, tools/visualize_ranks.py, tools/visualize_cam.py and the evaluation's
TensorBoard hook (TEST.VIS_TOKENS).

Geometry: the backbone's patch p of a (gh, gw) grid with patch size P and stride S covers input
pixels [r S, r S + P) x [c S, c S + P) (r, c = divmod(p, gw)). With overlapping patches (S < P)
the cells drawn are the S x S squares centred in those windows, so they tile the image.
"""

import logging
import os
from collections import Counter

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

DIM = 0.3  # brightness left to dropped patches
KEPT_OUTLINE = (255, 215, 0)  # kept-patch outline (gold)
GREEN, RED, BLUE = (0, 190, 0), (220, 0, 0), (40, 90, 230)
BACKGROUND, TEXT = (255, 255, 255), (0, 0, 0)
MISSING = (150, 150, 150)  # panel of a modality zero-filled (TEST.MISSING_MODALITIES)
MIN_HEIGHT = 128  # each image is upscaled to at least this many pixels tall

# A perceptually ordered colour map (dark blue -> purple -> orange -> yellow), inferno-like.
_CMAP = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)


def font(size=12):
    """DejaVu Sans where installed (clearer at small sizes), else Pillow's built-in font."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def colormap(values):
    """values in [0, 1], any shape -> uint8 RGB array of shape (*values.shape, 3)."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0, 1) * (len(_CMAP) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_CMAP) - 2)
    t = (v - lo)[..., None]
    return ((1 - t) * _CMAP[lo] + t * _CMAP[lo + 1]).round().astype(np.uint8)


def display_scale(size, min_height=MIN_HEIGHT):
    """Integer upscaling factor that makes an image of size (H, W) at least min_height tall."""
    return max(1, -(-min_height // size[0]))


def patch_cells(grid, patch, stride, scale=1):
    """Pixel boxes (x0, y0, x1, y1) of the N = gh * gw patch cells, row-major, at `scale`.

    grid (gh, gw), patch (P_h, P_w), stride (S_h, S_w): the backbone's patch embedding.
    """
    (gh, gw), (ph, pw), (sh, sw) = grid, patch, stride
    oy, ox = (ph - sh) / 2, (pw - sw) / 2
    boxes = []
    for r in range(gh):
        for c in range(gw):
            y0, x0 = r * sh + oy, c * sw + ox
            boxes.append(tuple(round(v * scale) for v in (x0, y0, x0 + sw, y0 + sh)))
    return boxes


def patch_weights(kept_index, weights, num_patches):
    """Aggregation weight each patch receives, summed over the N_c aggregated tokens.

    kept_index (K,), weights (N_c, K) -> (N,) float array; dropped patches get 0.
    """
    out = np.zeros(num_patches, dtype=np.float64)
    kept = np.asarray(kept_index, dtype=int)
    out[kept] = np.asarray(weights, dtype=np.float64).sum(axis=0)
    return out


def selection_panel(img, kept, boxes, scale):
    """img: PIL RGB at model input size; kept: bool (N,) -> upscaled picture with the kept patches
    at full brightness and outlined, the dropped ones dimmed."""
    big = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    bright = np.asarray(big, dtype=np.float64)
    out = bright * DIM
    for k, (x0, y0, x1, y1) in zip(kept, boxes):
        if k:
            out[y0:y1, x0:x1] = bright[y0:y1, x0:x1]
    pic = Image.fromarray(out.round().astype(np.uint8))
    draw = ImageDraw.Draw(pic)
    for k, (x0, y0, x1, y1) in zip(kept, boxes):
        if k:
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=KEPT_OUTLINE, width=1)
    return pic


def heat_panel(img, values, boxes, scale, vmax):
    """Per-patch values (N,) as a colour map blended over a grey copy of img (upscaled)."""
    big = img.resize((img.width * scale, img.height * scale), Image.NEAREST).convert("L")
    grey = np.repeat(np.asarray(big, dtype=np.float64)[..., None], 3, axis=2)
    colour = np.zeros_like(grey)
    cols = colormap(np.asarray(values) / max(vmax, 1e-12))
    for col, (x0, y0, x1, y1) in zip(cols, boxes):
        colour[y0:y1, x0:x1] = col
    return Image.fromarray((0.7 * colour + 0.3 * grey).round().astype(np.uint8))


def _colour_bar(width, height, vmax, fnt, label=None):
    """The colour map from 0 to vmax (its end labelled `label`, else the value)."""
    bar = Image.new("RGB", (width, height + 16), BACKGROUND)
    ramp = colormap(np.linspace(0, 1, width))[None].repeat(height, axis=0)
    bar.paste(Image.fromarray(ramp), (0, 0))
    draw = ImageDraw.Draw(bar)
    draw.text((0, height + 2), "0", fill=TEXT, font=fnt)
    label = label or f"{vmax:.3f}"
    draw.text((width - draw.textlength(label, font=fnt), height + 2), label, fill=TEXT, font=fnt)
    return bar


def token_figure(images, selection, grid, patch, stride, info, title=""):
    """One picture of SDTPS's token selection for one sample.

    images: {modality: PIL RGB at the model's input size}; selection: {modality: {"kept_index":
    (K,), "weights": (N_c, K)}} (tensors or arrays); grid / patch / stride: the backbone's patch
    embedding; info: legend items, e.g. {"K": 16, "N_c": 6, "beta": 0.25}.
    Top row: kept patches bright and outlined, dropped ones dimmed; bottom row: heat map of the
    aggregation weight each patch receives (summed over the N_c aggregated tokens).
    """
    mods = list(images)
    n = grid[0] * grid[1]
    size = next(iter(images.values())).size[::-1]
    scale = display_scale(size, 192)
    boxes = patch_cells(grid, patch, stride, scale)
    per_mod = {}
    for m in mods:
        kept_index = np.asarray(_np(selection[m]["kept_index"]), dtype=int)
        kept = np.zeros(n, dtype=bool)
        kept[kept_index] = True
        per_mod[m] = (kept, patch_weights(kept_index, _np(selection[m]["weights"]), n))
    vmax = max(float(w.max()) for _, w in per_mod.values())
    pw, ph = size[1] * scale, size[0] * scale
    pad, head = 16, 34
    fnt, small = font(14), font(11)
    legend_lines = [
        "top: kept patches (bright, outlined); dropped patches dimmed",
        "bottom: aggregation weight per patch (sum over the N_c tokens)",
        ", ".join(f"{k} = {v}" for k, v in info.items()) + "; modalities: " + ", ".join(mods),
    ]
    width = max(len(mods) * (pw + pad) + pad, 400)
    legend_h = 16 * len(legend_lines) + 36
    height = (title != "") * 20 + 2 * (ph + head) + legend_h
    fig = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(fig)
    y = 4
    if title:
        draw.text((pad, y), title, fill=TEXT, font=fnt)
        y += 20
    for i, m in enumerate(mods):
        x = pad + i * (pw + pad)
        kept, w = per_mod[m]
        draw.text((x, y), m, fill=TEXT, font=fnt)
        draw.text((x, y + 17), f"{int(kept.sum())}/{n} kept", fill=TEXT, font=small)
        fig.paste(selection_panel(images[m], kept, boxes, scale), (x, y + head))
        draw.text((x, y + ph + head + 2), m, fill=TEXT, font=fnt)
        draw.text((x, y + ph + head + 19), "weights", fill=TEXT, font=small)
        fig.paste(heat_panel(images[m], w, boxes, scale, vmax), (x, y + ph + 2 * head))
    y += 2 * (ph + head) + 4
    for line in legend_lines:
        draw.text((pad, y), line, fill=TEXT, font=small)
        y += 16
    fig.paste(_colour_bar(min(200, width - 2 * pad), 10, vmax, small), (pad, y + 2))
    return fig


def _np(x):
    return x.detach().float().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def triplet_column(images, scale):
    """{modality: PIL} -> the images stacked top to bottom, each upscaled by `scale`."""
    ims = [
        im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images.values()
    ]
    col = Image.new("RGB", (max(i.width for i in ims), sum(i.height for i in ims)), BACKGROUND)
    y = 0
    for im in ims:
        col.paste(im, (0, y))
        y += im.height
    return col


CAPTION_LINES = 3  # lines of text drawn under each panel of a rank list


def rank_figure(query, gallery, modalities, title="", border=4, note=""):
    """A query triplet and its ranked gallery triplets in one row.

    query: (images {modality: PIL}, caption); gallery: list of (images, caption, correct: bool);
    captions hold up to CAPTION_LINES lines; note: text after the gallery's header.
    -> (PIL image, panel boxes [(x0, y0, x1, y1)] of the 1 + len(gallery) bordered panels).
    The query's border is blue; a gallery border is green for the query's id, red otherwise.
    """
    size = next(iter(query[0].values())).size[::-1]
    scale = display_scale(size)
    cols = [triplet_column(query[0], scale)] + [triplet_column(g[0], scale) for g in gallery]
    colours = [BLUE] + [GREEN if g[2] else RED for g in gallery]
    captions = [query[1]] + [g[1] for g in gallery]
    cw, ch = cols[0].width + 2 * border, cols[0].height + 2 * border
    gap, pad, head, cap = 6, 10, 20 if title else 0, 12 * CAPTION_LINES + 6
    gap_after_query = 18
    width = 2 * pad + len(cols) * cw + (len(cols) - 1) * gap + gap_after_query
    height = head + 18 + ch + cap
    fig = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(fig)
    fnt, small = font(13), font(10)
    if title:
        draw.text((pad, 2), title, fill=TEXT, font=fnt)
    draw.text((pad, head + 2), "query (" + "/".join(modalities) + ")", fill=TEXT, font=small)
    boxes = []
    x = pad
    for i, (col, colour, caption) in enumerate(zip(cols, colours, captions)):
        if i > 0:
            if i == 1:
                x += gap_after_query
                draw.text(
                    (x, head + 2),
                    "top-ranked gallery" + (f" ({note})" if note else ""),
                    fill=TEXT,
                    font=small,
                )
        y = head + 18
        box = (x, y, x + cw, y + ch)
        draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=colour)
        fig.paste(col, (x + border, y + border))
        for j, line in enumerate(caption.split("\n")[:CAPTION_LINES]):
            draw.text((x, y + ch + 2 + 12 * j), line, fill=TEXT, font=small)
        boxes.append(box)
        x += cw + gap
    return fig, boxes


def model_geometry(model):
    """(grid, patch, stride) of a MultiModalReID's backbone patch embedding."""
    pe = model.backbone.patch_embed
    return tuple(pe.grid_size), tuple(pe.patch_size), tuple(pe.stride)


def sdtps_legend(cfg, model):
    s = model.sdtps
    return {"K": s.keep, "N_c": s.num_out, "beta": cfg.MODEL.SDTPS_BETA, "N": model.num_patches}


def spread_indices(records, num):
    """Indices of `num` records spread over identities first, then cameras; deterministic.

    records: data Records (pid, camid). Round-robin over the identities in order of first
    appearance: each round takes one record of every identity that has one left, preferring a
    camera that identity has not shown yet, then the camera shown least often so far, then the
    earliest record. So the first picks are one per identity (as many as there are), and an
    identity's second pick comes from another camera when it has one.
    -> list of min(num, len(records)) indices into records, in pick order.
    """
    left = {}
    for i, r in enumerate(records):
        left.setdefault(r.pid, []).append(i)
    shown = {pid: set() for pid in left}
    cam_count = Counter()
    picks = []
    num = min(num, len(records))
    while len(picks) < num:
        for pid, idx in left.items():
            if len(picks) == num:
                break
            if not idx:
                continue
            j = min(
                idx, key=lambda i: (records[i].camid in shown[pid], cam_count[records[i].camid], i)
            )
            idx.remove(j)
            shown[pid].add(records[j].camid)
            cam_count[records[j].camid] += 1
            picks.append(j)
    return picks


def protocol_junk(query, gallery, protocol):
    """Gallery records the evaluation protocol removes for the query record: bool tensor (G,).

    "market": same id and same camera; "scene" (MSVR310): same id and same scene.
    """
    same_id = torch.tensor([r.pid == query.pid for r in gallery], dtype=torch.bool)
    field = "sceneid" if protocol == "scene" else "camid"
    same = torch.tensor(
        [getattr(r, field) == getattr(query, field) for r in gallery], dtype=torch.bool
    )
    return same_id & same


def overlay_panel(img, cam, scale):
    """img: PIL RGB (W, H); cam: (H, W) array in [0, 1] -> upscaled picture of the colour-mapped
    map blended over a grey copy of img (bright = strong)."""
    big = img.resize((img.width * scale, img.height * scale), Image.BICUBIC)
    grey = np.repeat(np.asarray(big.convert("L"), dtype=np.float64)[..., None], 3, axis=2)
    heat = Image.fromarray(colormap(cam)).resize(big.size, Image.BILINEAR)
    return Image.fromarray(
        (0.65 * np.asarray(heat, dtype=np.float64) + 0.35 * grey).round().astype(np.uint8)
    )


def missing_panel(width, height, fnt):
    """A grey panel labelled "missing" for a modality zero-filled (TEST.MISSING_MODALITIES)."""
    pic = Image.new("RGB", (width, height), MISSING)
    draw = ImageDraw.Draw(pic)
    label = "missing"
    draw.text(
        ((width - draw.textlength(label, font=fnt)) / 2, height / 2 - 8),
        label,
        fill=BACKGROUND,
        font=fnt,
    )
    return pic


def cam_figure(images, cams, missing=(), title="", legend=()):
    """Class-activation maps of one triplet, the modalities side by side.

    images: {modality: PIL RGB at the model's input size}; cams: {modality: (H, W) array >= 0 on
    that image}; missing: modalities zero-filled (TEST.MISSING_MODALITIES; grey panels); legend:
    lines of text under the panels (the figure widens to fit them). Top row: the input; bottom row:
    the map scaled to its own peak over a grey copy, headed by the modality's share of the map
    summed over the modalities shown.
    """
    mods = list(images)
    size = next(iter(images.values())).size[::-1]
    scale = display_scale(size, 192)
    pw, ph = size[1] * scale, size[0] * scale
    pad, head = 16, 34
    fnt, small = font(14), font(11)
    total = sum(float(cams[m].sum()) for m in mods if m not in missing)
    legend = list(legend) + [
        "top: input; bottom: Grad-CAM, each modality scaled to its own peak",
        "share: the modality's part of the map summed over the modalities",
    ]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(
        [measure.textlength(t, font=small) for t in legend] + [measure.textlength(title, font=fnt)]
    )
    width = int(max(len(mods) * (pw + pad) + pad, text_w + 2 * pad))
    height = (title != "") * 20 + 2 * (ph + head) + 16 * len(legend) + 36
    fig = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(fig)
    y = 4
    if title:
        draw.text((pad, y), title, fill=TEXT, font=fnt)
        y += 20
    for i, m in enumerate(mods):
        x = pad + i * (pw + pad)
        draw.text((x, y), m, fill=TEXT, font=fnt)
        draw.text((x, y + ph + head + 2), m, fill=TEXT, font=fnt)
        if m in missing:
            draw.text((x, y + 17), "zero-filled", fill=TEXT, font=small)
            fig.paste(missing_panel(pw, ph, fnt), (x, y + head))
            fig.paste(missing_panel(pw, ph, fnt), (x, y + ph + 2 * head))
            continue
        cam = np.asarray(cams[m], dtype=np.float64)
        peak = float(cam.max())
        share = float(cam.sum()) / total if total > 0 else 0.0
        draw.text((x, y + 17), "input", fill=TEXT, font=small)
        label = f"share {100 * share:.0f}%" + (" (map all 0)" if peak == 0 else "")
        draw.text((x, y + ph + head + 19), label, fill=TEXT, font=small)
        big = images[m].resize((pw, ph), Image.BICUBIC)
        fig.paste(big, (x, y + head))
        fig.paste(
            overlay_panel(images[m], cam / peak if peak > 0 else cam, scale), (x, y + ph + 2 * head)
        )
    y += 2 * (ph + head) + 4
    for line in legend:
        draw.text((pad, y), line, fill=TEXT, font=small)
        y += 16
    fig.paste(_colour_bar(min(200, width - 2 * pad), 10, 1.0, small, "peak"), (pad, y + 2))
    return fig


def display_images(cfg, record):
    """{modality: PIL RGB} of a record, resized to the model's test input size (what it sees)."""
    from data.datasets import read_images

    h, w = cfg.INPUT.SIZE_TEST
    return {m: im.resize((w, h), Image.BICUBIC) for m, im in read_images(record).items()}


def save_figures(figures, records, out, modality):
    """Each PIL figure to OUT/<i:03d>_<stem of its record's `modality` file>.png; -> the paths."""
    os.makedirs(out, exist_ok=True)
    paths = []
    for i, (fig, rec) in enumerate(zip(figures, records)):
        name = os.path.splitext(os.path.basename(rec.files[modality]))[0]
        paths.append(os.path.join(out, f"{i:03d}_{name}.png"))
        fig.save(paths[-1])
    return paths
