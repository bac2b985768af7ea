"""MultiModalReID: shared backbone -> PIFE -> (HDM [+ ATM] | SDTPS) -> BNNeck heads -> losses /
features.
"""

import torch
import torch.nn as nn

from .heads import BNNeck
from .losses import accuracy, id_loss, triplet_loss


class MultiModalReID(nn.Module):
    """The three modalities go through one backbone as one batch of 3B images.

    Training: `model(batch)` -> {"loss_*": weighted scalars, "acc_*": detached accuracies}.
    Evaluation: `model(batch)` -> {"ori": (B, 3C), "fused": (B, D)} pre-BN features ("fused" only
    with
    HDM or SDTPS); `return_selection=True` adds SDTPS's per-modality kept indices, masks and
    weights.
    """

    def __init__(self, cfg, backbone, pife, hdm, atm, sdtps, num_classes, num_cameras):
        super().__init__()
        m = cfg.MODEL
        self.modalities = tuple(cfg.INPUT.MODALITIES)
        self.backbone = backbone
        self.num_patches = backbone.num_patches
        self.num_cameras = num_cameras
        self.sie = nn.Embedding(num_cameras, backbone.width) if m.SIE_CAMERA else None
        if self.sie is not None:
            nn.init.trunc_normal_(self.sie.weight, std=0.02)
        self.sie_coe = m.SIE_COE
        self.pife, self.hdm, self.atm, self.sdtps = pife, hdm, atm, sdtps
        dim = backbone.out_dim
        # MODEL.JOINT_ORI_HEAD: the ID and triplet losses of the un-fused features act on their
        # concatenation [R; N; T] through one BNNeck (DeMo's person recipe), else on each
        # modality's global through a BNNeck of its own (its vehicle recipe). Evaluation's "ori"
        # is [R; N; T] either way.
        self.joint_ori_head = m.JOINT_ORI_HEAD
        n_mod = len(self.modalities)
        self.ori_heads = nn.ModuleList(
            [BNNeck(n_mod * dim, num_classes)]
            if self.joint_ori_head
            else [BNNeck(dim, num_classes) for _ in range(n_mod)]
        )
        # 7 * dim: HDM gives one C-wide feature per non-empty subset of the three modalities
        # (2^3 - 1 = 7: R, N, T, RN, RT, NT, RNT; fusion.demo.HDM_SUBSETS), concatenated; ATM
        # re-weights them and keeps that width.
        fused_dim = 7 * dim if hdm is not None else n_mod * dim if sdtps is not None else 0
        self.fused_head = BNNeck(fused_dim, num_classes) if fused_dim else None
        self.patterns = (1, 2, 3) if fused_dim else (1,)
        self.id_weight, self.tri_weight = m.ID_LOSS_WEIGHT, m.TRIPLET_LOSS_WEIGHT
        self.fused_weight = m.SDTPS_LOSS_WEIGHT if sdtps is not None else 1.0
        self.label_smooth = m.LABEL_SMOOTH
        self.margin = None if m.NO_MARGIN else cfg.SOLVER.MARGIN

    def _sie(self, camids, repeat):
        if self.sie is None:
            return None
        if camids is None:
            raise ValueError("MODEL.SIE_CAMERA is on: the batch needs 'camids'")
        bad = (camids < 0) | (camids >= self.num_cameras)
        # a device-side assert: no host sync on the training hot path (nor a graph break)
        if camids.is_cuda or torch.compiler.is_compiling():
            torch._assert_async(~bad.any(), f"camera ids must be in [0, {self.num_cameras})")
        elif bool(bad.any()):
            raise ValueError(
                f"camera ids must be in [0, {self.num_cameras}), got {sorted(set(camids.tolist()))}"
            )
        return (self.sie_coe * self.sie(camids)).repeat(repeat, 1)

    def encode(self, batch):
        """batch -> globals (list of (B, C)), ori (B, 3C), fused (B, D) or None, SDTPS output or
        None.
        """
        images = [batch["images"][name] for name in self.modalities]
        b = images[0].shape[0]
        tokens = self.backbone(
            torch.cat(images, dim=0), self._sie(batch.get("camids"), len(images))
        )
        if tokens.shape[1] - 1 != self.num_patches:
            raise ValueError(
                f"the backbone gave {tokens.shape[1] - 1} patches, built for {self.num_patches}"
            )
        cls = list(tokens[:, 0].split(b))
        patches = list(tokens[:, 1:].split(b))
        globals_ = self.pife(cls, patches) if self.pife is not None else cls
        fused, sd = None, None
        if self.hdm is not None:
            parts = self.hdm(patches, globals_)
            fused = self.atm(parts) if self.atm is not None else torch.cat(parts, dim=-1)
        elif self.sdtps is not None:
            sd = self.sdtps(patches, globals_)
            fused = sd["feat"]
        return globals_, torch.cat(globals_, dim=-1), fused, sd

    def forward(self, batch, return_selection=False):
        globals_, ori, fused, sd = self.encode(batch)
        if not self.training:
            out = {"ori": ori}
            if fused is not None:
                out["fused"] = fused
            if return_selection and sd is not None:
                out["selection"] = {
                    name: {
                        "kept_index": sd["kept_index"][i],
                        "mask": sd["mask"][i],
                        "weights": sd["weights"][i],
                        "tokens": sd["tokens"][i],
                    }
                    for i, name in enumerate(self.modalities)
                }
            return out
        pids = batch["pids"]
        pairs = (
            [("ori", ori, self.ori_heads[0], 1.0)]
            if self.joint_ori_head
            else [
                (name, g, head, 1.0)
                for name, g, head in zip(self.modalities, globals_, self.ori_heads)
            ]
        )
        if fused is not None:
            pairs.append(("fused", fused, self.fused_head, self.fused_weight))
        out = {}
        for name, feat, head, scale in pairs:
            logits = head(feat)
            out[f"loss_id_{name}"] = (
                scale * self.id_weight * id_loss(logits, pids, self.label_smooth)
            )
            out[f"loss_tri_{name}"] = (
                scale * self.tri_weight * triplet_loss(feat, pids, self.margin)
            )
            out[f"acc_{name}"] = accuracy(logits, pids)
        return out


def select_pattern(feats, pattern):
    """feats from the eval forward -> 1: ori, 2: fused, 3: cat(ori, fused)."""
    if pattern == 1:
        return feats["ori"]
    if pattern not in (2, 3):
        raise ValueError(f"return_pattern must be 1, 2 or 3, got {pattern}")
    if "fused" not in feats:
        raise ValueError(f"return_pattern {pattern} needs a fused feature (MODEL.HDM or USE_SDTPS)")
    return feats["fused"] if pattern == 2 else torch.cat([feats["ori"], feats["fused"]], dim=-1)
