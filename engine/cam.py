"""Grad-CAM per modality on the backbone's last block (tools/visualize_cam.py).

MultiModalReID runs its M modalities through the backbone as one batch of M * B images, modality
after modality (rows m B .. (m + 1) B - 1 are modality m, INPUT.MODALITIES order), so the last
block's output (M B, 1 + N, W) splits into M chunks of B whose tokens 1.. are that modality's N
patch tokens, row-major on the (gh, gw) grid. Grad-CAM there: channel weights = spatial mean of
the gradients of a score, map = ReLU(sum over channels of weight x activation), one value per patch.

Scores (one per triplet, from the eval forward's features `{"ori": (B, M C), "fused": (B, D)}`):
- `logit_score`: the classifier logit of the triplet's own id (a training class), summed over the
  heads that see the return_pattern's features;
- `similarity_score`: the cosine similarity of the pattern's feature to a reference (its best
  same-id gallery match); where a row has none, the length of the feature's projection on its own
  detached direction (a cosine to its own detached copy would have zero gradient: it is at its
  maximum, 1).
"""

import torch
import torch.nn.functional as F

from modeling import select_pattern


def grad_cam(acts, grads):
    """acts, grads (B, N, C) -> (B, N) float32: ReLU(sum_c w_c acts[:, n, c]), w_c = mean_n
    grads[:, n, c]."""
    weights = grads.float().mean(dim=1, keepdim=True)
    return F.relu((weights * acts.float()).sum(dim=-1))


def cam_to_image(cam, grid, patch, stride, size):
    """Per-patch maps (B, N) on the (gh, gw) grid -> (B, H, W) on the input image of `size`.

    Each patch's value sits at the centre of its window (r S + P / 2, c S + P / 2) and is
    interpolated bilinearly between centres; beyond the outermost centres it is held constant.
    grid (gh, gw), patch (P_h, P_w), stride (S_h, S_w): the backbone's patch embedding.
    """
    (gh, gw), (ph, pw), (sh, sw), (h, w) = grid, patch, stride, size
    maps = cam.float().reshape(-1, 1, gh, gw)

    def coords(n, p, s, g):  # pixel centres in grid units, then in grid_sample's [-1, 1]
        u = ((torch.arange(n, dtype=torch.float32) + 0.5 - p / 2) / s).clamp(0, g - 1)
        return 2 * u / (g - 1) - 1 if g > 1 else torch.zeros(n)

    ys, xs = coords(h, ph, sh, gh), coords(w, pw, sw, gw)
    where = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2): (x, y)
    where = where.to(maps.device).expand(maps.shape[0], h, w, 2)
    return F.grid_sample(maps, where, mode="bilinear", align_corners=True)[:, 0]


def block_cams(model, batch, score_fn):
    """Grad-CAM of every modality of a batch, through the model's eval forward run with grad.

    model: a MultiModalReID (needs `.backbone.blocks`, `.modalities`, `.num_patches`); batch: a
    test-loader batch dict; score_fn(feats, batch) -> (B,) scores from the eval outputs.
    -> ({modality: (B, N) maps}, scores (B,) detached). Triplets do not interact in the eval
    forward, so the gradient of the summed scores is each triplet's own.
    """
    store = {}

    def keep(_module, _inputs, out):
        if not out.requires_grad:  # a frozen backbone: the maps still need the gradient here
            out = out.detach().requires_grad_()
        store["out"] = out
        return out

    was_training = model.training
    model.eval()
    handle = model.backbone.blocks[-1].register_forward_hook(keep)
    try:
        with torch.enable_grad():
            feats = model(batch)
            scores = score_fn(feats, batch)
            (grads,) = torch.autograd.grad(scores.sum(), store["out"])
    finally:
        handle.remove()
        model.train(was_training)
    acts = store["out"].detach()
    mods = list(model.modalities)
    b = acts.shape[0] // len(mods)
    if acts.shape[0] != b * len(mods) or acts.shape[1] != 1 + model.num_patches:
        raise ValueError(
            f"the last block gave {tuple(acts.shape)}; expected ({len(mods)} x B, "
            f"1 + {model.num_patches}, width) for modalities {mods}"
        )
    cams = grad_cam(acts[:, 1:], grads[:, 1:])
    return {m: cams[i * b : (i + 1) * b] for i, m in enumerate(mods)}, scores.detach()


def pattern_logits(model, feats, pattern):
    """(B, classes) logits of the heads that see return_pattern's features, summed: 1 the ori
    head(s) (one per modality on its C-wide slice of ori, or one on all of ori with
    MODEL.JOINT_ORI_HEAD), 2 the fused head, 3 both."""
    parts = []
    if pattern in (1, 3):
        heads = model.ori_heads
        chunks = feats["ori"].split(feats["ori"].shape[1] // len(heads), dim=1)
        parts += [head(chunk) for head, chunk in zip(heads, chunks)]
    if pattern in (2, 3):
        parts.append(model.fused_head(feats["fused"]))
    return torch.stack(parts).sum(dim=0)


def logit_score(model, pattern, classes):
    """score_fn for block_cams: the logit of class classes[batch["index"]] (a LongTensor, one
    training class per record)."""

    def score(feats, batch):
        cls = classes.to(feats["ori"].device)[batch["index"]]
        return pattern_logits(model, feats, pattern).gather(1, cls[:, None])[:, 0]

    return score


def similarity_score(pattern, refs):
    """score_fn for block_cams: cosine of the pattern's feature to refs[batch["index"]] ((R, D),
    rows of NaN where a record has no reference: then f . f / |f| with the second f detached)."""

    def score(feats, batch):
        f = select_pattern(feats, pattern).float()
        ref = refs.to(f.device)[batch["index"]]
        own = torch.isnan(ref).any(dim=1)
        ref = torch.where(own[:, None], f.detach(), ref)
        cos = F.cosine_similarity(f, ref, dim=1)
        proj = (f * F.normalize(f.detach(), dim=1)).sum(dim=1)
        return torch.where(own, proj, cos)

    return score
