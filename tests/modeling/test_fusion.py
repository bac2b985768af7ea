"""HDM and ATM, stored stacked and computed batched, against DeMo's form of them (one
nn.MultiheadAttention per subset, one Linear -> QuickGELU -> BatchNorm1d per head and expert) in
training mode: outputs, BatchNorm running statistics and gradients."""

import pytest
import torch
import torch.nn as nn
from timm.layers import QuickGELU
from torch.func import functional_call

from modeling.fusion.demo import ATM, HDM, HDM_SUBSETS


def reference_hdm(hdm, patches, globals_):
    seqs = [torch.cat([g.unsqueeze(1), p], dim=1) for g, p in zip(globals_, patches)]
    c = hdm.tokens.shape[1]
    out = []
    for s, subset in enumerate(HDM_SUBSETS):
        attn = nn.MultiheadAttention(c, hdm.heads, batch_first=True)
        weights = {
            "in_proj_weight": hdm.in_proj.weight[s],
            "in_proj_bias": hdm.in_proj.bias[s],
            "out_proj.weight": hdm.out_proj.weight[s],
            "out_proj.bias": hdm.out_proj.bias[s],
        }
        kv = torch.cat([seqs[i] for i in subset], dim=1)
        query = hdm.tokens[s].expand(kv.shape[0], 1, -1)
        y = functional_call(attn, weights, (query, kv, kv), {"need_weights": False})[0]
        out.append(y.squeeze(1))
    return out


def reference_atm(atm, feats):
    """DeMo's per-expert loop; returns the output and the experts' BatchNorms (running stats)."""
    x = torch.stack(feats, dim=1)
    gates = atm.gates(x)
    heads, d = atm.heads, atm.head_dim
    norms, rows = [], []
    for e in range(atm.num_experts):
        row = []
        for h in range(heads):
            i = e * heads + h
            linear = {"weight": atm.experts.weight[i], "bias": atm.experts.bias[i]}
            channels = slice(i * d, (i + 1) * d)
            affine = {
                "weight": atm.expert_norm.weight[channels],
                "bias": atm.expert_norm.bias[channels],
            }
            norm = nn.BatchNorm1d(d)  # its own running statistics
            norms.append(norm)
            y = functional_call(nn.Linear(d, d), linear, (x[:, e, h * d : (h + 1) * d],))
            y = functional_call(norm, affine, (QuickGELU()(y),))
            row.append(y * gates[:, h, e : e + 1])
        rows.append(torch.cat(row, dim=-1))
    return torch.stack(rows, dim=1).flatten(1), norms


def _grads(module, outputs):
    module.zero_grad()
    torch.cat([o.flatten() for o in outputs]).pow(2).sum().backward()
    return {k: p.grad.clone() for k, p in module.named_parameters()}


@pytest.mark.parametrize("dim", [64, 128])
def test_hdm_matches_seven_multihead_attentions(dim):
    torch.manual_seed(0)
    hdm = HDM(dim, dropout=0.0).train()
    nn.init.normal_(hdm.in_proj.bias)  # zero at init: give the folded biases something to do
    nn.init.normal_(hdm.out_proj.bias)
    patches = [torch.randn(5, 6, dim) for _ in range(3)]
    globals_ = [torch.randn(5, dim) for _ in range(3)]
    ours = hdm(patches, globals_)
    ours_grads = _grads(hdm, ours)
    ref = reference_hdm(hdm, patches, globals_)
    ref_grads = _grads(hdm, ref)
    assert len(ours) == 7
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # the key bias shifts every logit of a softmax equally: its true gradient is zero, which the
    # folded form gives exactly and DeMo's form up to rounding (about 1e-5 here)
    assert not ours_grads["in_proj.bias"].view(7, 3, dim)[:, 1].any()
    for k in ref_grads:
        torch.testing.assert_close(ours_grads[k], ref_grads[k], rtol=1e-4, atol=1e-4, msg=k)


def test_hdm_attention_dropout_is_active_in_training_only():
    torch.manual_seed(0)
    hdm = HDM(64, dropout=0.5)
    patches = [torch.randn(4, 6, 64) for _ in range(3)]
    globals_ = [torch.randn(4, 64) for _ in range(3)]
    hdm.train()
    assert not torch.allclose(hdm(patches, globals_)[6], hdm(patches, globals_)[6])
    hdm.eval()
    torch.testing.assert_close(hdm(patches, globals_)[6], hdm(patches, globals_)[6])


@pytest.mark.parametrize("heads", [4, 8])
def test_atm_matches_per_expert_modules(heads):
    torch.manual_seed(0)
    atm = ATM(64, heads).train()
    nn.init.normal_(atm.expert_norm.weight)
    nn.init.normal_(atm.expert_norm.bias)
    feats = [torch.randn(6, 64) for _ in range(7)]
    ours = atm(feats)
    ours_grads = _grads(atm, [ours])
    ref, norms = reference_atm(atm, feats)
    ref_grads = _grads(atm, [ref])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    for k in ref_grads:
        torch.testing.assert_close(ours_grads[k], ref_grads[k], rtol=1e-4, atol=1e-5, msg=k)
    # one forward each: the stacked BatchNorm's running statistics are the 7 x H experts' ones
    torch.testing.assert_close(
        atm.expert_norm.running_mean, torch.cat([n.running_mean for n in norms])
    )
    torch.testing.assert_close(
        atm.expert_norm.running_var, torch.cat([n.running_var for n in norms])
    )
