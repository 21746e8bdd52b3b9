"""Wanda inside the selected modules (``mape+wanda``, paper Appendix B.2; mape_viz/wanda.py).

Scores are recomputed by hand: input features from the model's own submodules (layer 0) or
from plain ``register_forward_hook`` captures (deeper sites), norms over the non-padding
tokens, |W|·‖X‖ entry by entry, and the kept set by a Python sort.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import make_batch, make_model
from torch import nn
from transformers.pytorch_utils import Conv1D

import mape_viz as mv
from mape_viz.choices import describe
from mape_viz.sitemaps import get_sites
from mape_viz.types import ModuleMask
from mape_viz.unlearning import SparseParams, slice_specs
from mape_viz.unlearning.sparse import SliceSpec
from mape_viz.wanda import WANDA_SPARSITY, restrict_to_wanda, slab_scores, wanda_entries


def mask_of(model, heads=(), filters=()) -> ModuleMask:
    sites = get_sites(model)
    h = torch.zeros(sites.shape("heads"), dtype=torch.bool)
    f = torch.zeros(sites.shape("filters"), dtype=torch.bool)
    for layer, unit in heads:
        h[layer, unit] = True
    for layer, unit in filters:
        f[layer, unit] = True
    return ModuleMask(heads=h, filters=f)


def hand_norms(x: torch.Tensor, attention_mask: torch.Tensor) -> list[float]:
    """‖X_j‖₂ over the tokens with mask 1, one feature at a time."""
    rows = [x[b, t] for b in range(x.shape[0]) for t in range(x.shape[1]) if attention_mask[b, t]]
    return [math.sqrt(sum(float(r[j]) ** 2 for r in rows)) for j in range(x.shape[-1])]


def hand_keep(scores: list[float], sparsity: float) -> set[int]:
    """Indices of the ⌈(1−s)·n⌉ largest scores, ties to the lower index."""
    k = max(1, math.ceil(round((1 - sparsity) * len(scores), 9)))
    return set(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k])


def flat_true(t: torch.Tensor) -> set[int]:
    return set(torch.nonzero(t.reshape(-1)).flatten().tolist())


# ---- the score on a tiny layer, by hand -------------------------------------------------------

def test_slab_scores_by_hand_on_a_tiny_linear():
    lin = nn.Linear(3, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0],
                                       [-3.0, 1.0, 2.0], [2.0, -0.5, -6.0]]))
        lin.bias.copy_(torch.tensor([0.1, -0.7, 0.2, 0.4]))
    norms = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    rows = SliceSpec("w", lin, "weight", 0, torch.tensor([1, 3]), "out", False)
    # rows 1 and 3: |W| times the norm of the input each column multiplies
    assert slab_scores(rows, norms).tolist() == [[0.5, 8.0, 0.5], [2.0, 1.0, 3.0]]
    cols = SliceSpec("w", lin, "weight", 1, torch.tensor([0, 2]), "in", False)
    # columns 0 and 2: every entry of column j multiplies input j
    assert slab_scores(cols, norms).tolist() == [[1.0, 1.5], [0.5, 0.5], [3.0, 1.0], [2.0, 3.0]]
    bias = SliceSpec("b", lin, "bias", 0, torch.tensor([1, 3]), "out", False)
    assert slab_scores(bias, None).tolist() == pytest.approx([0.7, 0.4])


def test_slab_scores_by_hand_on_a_transposed_conv1d():
    conv = Conv1D(nf=2, nx=3)  # GPT-2 layout: weight (in=3, out=2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5], [-4.0, 1.0]]))
    norms = torch.tensor([2.0, 1.0, 0.25], dtype=torch.float64)
    out_col = SliceSpec("w", conv, "weight", 1, torch.tensor([1]), "out", True)
    assert slab_scores(out_col, norms).tolist() == [[4.0], [0.5], [0.25]]
    in_row = SliceSpec("w", conv, "weight", 0, torch.tensor([0, 2]), "in", True)
    assert slab_scores(in_row, norms).tolist() == [[2.0, 4.0], [1.0, 0.25]]


# ---- the kept entries of a real model, by hand -------------------------------------------------

def test_wanda_entries_by_hand_on_llama():
    model = make_model("llama", dtype=torch.float64)
    batches = [make_batch("causal_lm", bsz=4, seed=3), make_batch("causal_lm", bsz=3, seed=4)]
    mask = mask_of(model, heads=[(0, 1)], filters=[(1, 5)])
    S = 0.9
    got = wanda_entries(model, mask, batches, sparsity=S)
    params = dict(model.named_parameters())
    layer0, layer1 = model.model.layers[0], model.model.layers[1]
    # independent captures of the deeper inputs (plain hooks, kept whole with their masks)
    caps = {"o0": [], "gate1": [], "down1": []}
    hs = [layer0.self_attn.o_proj.register_forward_pre_hook(lambda m, a: caps["o0"].append(a[0])),
          layer1.mlp.gate_proj.register_forward_pre_hook(lambda m, a: caps["gate1"].append(a[0])),
          layer1.mlp.down_proj.register_forward_pre_hook(lambda m, a: caps["down1"].append(a[0]))]
    with torch.no_grad():
        for b in batches:
            model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        x_attn = [layer0.input_layernorm(model.model.embed_tokens(b["input_ids"])) for b in batches]
    for h in hs:
        h.remove()
    am = torch.cat([b["attention_mask"] for b in batches])  # both batches have 9 tokens

    def norms_of(xs):
        return hand_norms(torch.cat(xs), am)

    n_in = norms_of(x_attn)  # q/k/v input: RMSNorm(embeddings), by hand from the submodules
    n_o, n_gate, n_down = norms_of(caps["o0"]), norms_of(caps["gate1"]), norms_of(caps["down1"])
    d = 4  # d_head; head 1 -> q rows 4:8, K/V group 0 (2 groups of 2 heads) -> rows 0:4
    W = {n: params[f"model.layers.{n}"].detach() for n in (
        "0.self_attn.q_proj.weight", "0.self_attn.k_proj.weight", "0.self_attn.o_proj.weight",
        "1.mlp.gate_proj.weight", "1.mlp.down_proj.weight")}
    cases = {
        "0.self_attn.q_proj.weight": [abs(float(W["0.self_attn.q_proj.weight"][r, j])) * n_in[j]
                                      for r in range(d, 2 * d) for j in range(16)],
        "0.self_attn.k_proj.weight": [abs(float(W["0.self_attn.k_proj.weight"][r, j])) * n_in[j]
                                      for r in range(0, d) for j in range(16)],
        "0.self_attn.o_proj.weight": [abs(float(W["0.self_attn.o_proj.weight"][r, c])) * n_o[c]
                                      for r in range(16) for c in range(d, 2 * d)],
        "1.mlp.gate_proj.weight": [abs(float(W["1.mlp.gate_proj.weight"][5, j])) * n_gate[j]
                                   for j in range(16)],
        "1.mlp.down_proj.weight": [abs(float(W["1.mlp.down_proj.weight"][r, 5])) * n_down[5]
                                   for r in range(16)],
    }
    for name, scores in cases.items():
        keep = got[f"model.layers.{name}"]
        assert flat_true(keep) == hand_keep(scores, S), name
    # every sliced parameter of the selection has an entry mask, and nothing else
    assert set(got) == {s.name for s in slice_specs(model, mask)}


def test_each_unit_slice_keeps_its_own_share():
    """Two GQA heads of one K/V group share that group's rows once; every head and filter
    slice keeps exactly ⌈(1−s)·n⌉ entries (here s = 0.5)."""
    model = make_model("llama", dtype=torch.float32)
    mask = mask_of(model, heads=[(0, 0), (0, 1), (1, 3)], filters=[(0, 2), (0, 7), (1, 0)])
    got = wanda_entries(model, mask, [make_batch("causal_lm", bsz=3)], sparsity=0.5)
    q = got["model.layers.0.self_attn.q_proj.weight"]  # heads 0, 1 -> rows 0:8 of the slab
    assert q.shape == (8, 16)
    assert int(q[:4].sum()) == int(q[4:].sum()) == 32
    k = got["model.layers.0.self_attn.k_proj.weight"]  # one shared K/V group, 4 rows
    assert k.shape == (4, 16) and int(k.sum()) == 32
    down = got["model.layers.0.mlp.down_proj.weight"]  # filters 2, 7 -> two columns
    assert down.shape == (16, 2) and down.sum(0).tolist() == [8, 8]
    assert got["model.layers.1.mlp.up_proj.weight"].sum().item() == 8


def test_gpt2_fused_qkv_blocks_are_separate_slices():
    model = make_model("gpt2", dtype=torch.float64)
    batch = make_batch("causal_lm", bsz=3, seed=2)
    mask = mask_of(model, heads=[(1, 2)])
    got = wanda_entries(model, mask, [batch], sparsity=0.75)
    cap = []
    h = model.transformer.h[1].attn.c_attn.register_forward_pre_hook(lambda m, a: cap.append(a[0]))
    with torch.no_grad():
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    h.remove()
    norms = hand_norms(cap[0], batch["attention_mask"])
    W = model.transformer.h[1].attn.c_attn.weight.detach()  # (in=16, out=48): Q | K | V
    keep = got["transformer.h.1.attn.c_attn.weight"]  # slab (16, 12): head 2 of Q, K and V
    assert keep.shape == (16, 12)
    for block in range(3):
        cols = range(block * 16 + 8, block * 16 + 12)
        scores = [abs(float(W[i, c])) * norms[i] for i in range(16) for c in cols]
        assert flat_true(keep[:, block * 4:(block + 1) * 4]) == hand_keep(scores, 0.75)
    bias = got["transformer.h.1.attn.c_attn.bias"]
    assert bias.shape == (12,) and int(bias.sum()) == 3  # one of each 4-entry block


# ---- training only the kept entries ------------------------------------------------------------

def full_masks(model, mask: ModuleMask) -> dict[str, torch.Tensor]:
    """Per parameter, True where ``mask.entries`` allows a change (built from the slab layout)."""
    out = {}
    for s in slice_specs(model, mask):
        m = torch.zeros_like(s.param, dtype=torch.bool)
        m.index_copy_(s.dim, s.index, mask.entries[s.name])
        out[s.name] = m
    return out


@pytest.mark.parametrize("method", ["ga", "so"])
def test_mape_wanda_trains_only_the_kept_entries(method):
    model = make_model("llama", dtype=torch.float32)
    forget = [make_batch("causal_lm", bsz=4, seed=1)]
    retain = [make_batch("causal_lm", bsz=4, seed=2), make_batch("causal_lm", bsz=4, seed=3)]
    cfg = {"epochs": 3, "lr": 5e-2, "weight_decay": 0.1} if method == "ga" else {"eta": 1e-3}
    res = mv.unlearn(model, method, selector="mape+wanda", sparsity=0.5, forget=forget,
                     retain=retain, config=cfg)
    assert res.ok and res.mask.entries is not None
    assert res.mask.meta["wanda_sparsity"] == WANDA_SPARSITY
    allowed = full_masks(model, res.mask)
    n_allowed = sum(int(m.sum()) for m in allowed.values())
    assert res.n_trainable_params == n_allowed == res.mask.meta["n_entries"]
    n_slab = sum(s.param.index_select(s.dim, s.index).numel() for s in slice_specs(model, res.mask))
    # 10 % of each slice, rounded up per slice (a 16-entry filter row keeps 2)
    assert 0.1 * n_slab <= n_allowed <= 0.15 * n_slab
    after = dict(res.model.named_parameters())
    changed = 0
    for name, p in model.named_parameters():
        keep = allowed.get(name, torch.zeros_like(p, dtype=torch.bool))
        assert torch.equal(p.detach()[~keep], after[name].detach()[~keep]), name  # bit-identical
        changed += int((p.detach() != after[name].detach()).sum())
    assert 0 < changed <= n_allowed
    assert changed == res.n_changed_params


def test_sparse_params_masks_gradients_and_rejects_bad_entries():
    model = make_model("llama", dtype=torch.float32)
    mask = mask_of(model, heads=[(0, 1)])
    mask = restrict_to_wanda(model, mask, [make_batch("causal_lm")], sparsity=0.75)
    sp = SparseParams(copy.deepcopy(model), mask)
    with sp.attached():
        out = sp.model(**{k: v for k, v in make_batch("causal_lm").items()})
        out.loss.backward()
    for v, e in zip(sp.values, sp.entries):
        assert e is not None and bool((v.grad[~e] == 0).all()) and bool((v.grad[e] != 0).any())
    bad = copy.copy(mask)
    bad.entries = {**mask.entries, "model.layers.0.self_attn.q_proj.weight": torch.ones(3, 3, dtype=torch.bool)}
    with pytest.raises(ValueError, match="shaped like the selected slab"):
        SparseParams(copy.deepcopy(model), bad)
    bad.entries = {**mask.entries, "model.layers.1.mlp.up_proj.weight": torch.ones(1, 16, dtype=torch.bool)}
    with pytest.raises(ValueError, match="without a selected slice"):
        SparseParams(copy.deepcopy(model), bad)
    with pytest.raises(ValueError, match="sparsity"):
        wanda_entries(model, mask, [make_batch("causal_lm")], sparsity=1.0)
    with pytest.raises(ValueError, match="empty"):
        wanda_entries(model, mask, [], sparsity=0.5)


def test_mape_wanda_is_listed_everywhere():
    assert "mape+wanda" in mv.list_selectors() and "mape+wanda" in mv.list_selectors(False)
    assert "Wanda" in describe("selector", "mape+wanda")
