"""Core engine: site maps, mask hooks, per-sample mask gradients and MAPE scores."""

from __future__ import annotations

import pytest
import torch

from conftest import FAMILIES, make_batch, make_model
from mape_viz.gradients import accumulate_mask_grads, frozen, per_sample_mask_grads
from mape_viz.losses import per_sample_loss
from mape_viz.masking import apply_masks
from mape_viz.scores import SELECTORS, score_modules
from mape_viz.sitemaps import SITE_MAPS, get_sites

# Independent of the site maps: where each family's attention / FFN output projections are,
# and whether their weights are stored (in, out).
HAND_SITES = {
    "bert": ("bert.encoder.layer.{l}.attention.output.dense.weight", "bert.encoder.layer.{l}.output.dense.weight", False),
    "roberta": ("roberta.encoder.layer.{l}.attention.output.dense.weight", "roberta.encoder.layer.{l}.output.dense.weight", False),
    "distilbert": ("distilbert.transformer.layer.{l}.attention.out_lin.weight", "distilbert.transformer.layer.{l}.ffn.lin2.weight", False),
    "gpt2": ("transformer.h.{l}.attn.c_proj.weight", "transformer.h.{l}.mlp.c_proj.weight", True),
    "llama": ("model.layers.{l}.self_attn.o_proj.weight", "model.layers.{l}.mlp.down_proj.weight", False),
    "mistral": ("model.layers.{l}.self_attn.o_proj.weight", "model.layers.{l}.mlp.down_proj.weight", False),
    "qwen2": ("model.layers.{l}.self_attn.o_proj.weight", "model.layers.{l}.mlp.down_proj.weight", False),
}


def logits_of(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def kind_of(family):
    return FAMILIES[family][2]


def test_every_family_has_a_site_map():
    assert set(SITE_MAPS) == set(FAMILIES)


def test_sizes_read_from_model(family):
    sites = get_sites(make_model(family))
    assert (sites.n_layers, sites.n_heads, sites.d_head, sites.n_filters) == (2, 4, 4, 24)
    assert sites.n_kv_heads == (2 if family in ("llama", "mistral", "qwen2") else 4)


def test_all_ones_mask_is_bit_identical(family):
    model = make_model(family, dtype=torch.float32)
    batch = make_batch(kind_of(family))
    ref = logits_of(model, batch)
    sites = get_sites(model)
    with apply_masks(model, torch.ones(sites.shape("heads")), torch.ones(sites.shape("filters"))):
        masked = logits_of(model, batch)
    assert torch.equal(ref, masked)


def test_zero_head_equals_zeroing_output_columns_by_hand(family):
    model = make_model(family)
    batch = make_batch(kind_of(family))
    sites = get_sites(model)
    layer, head, d = 1, 2, sites.d_head
    heads = torch.ones(sites.shape("heads"))
    heads[layer, head] = 0
    with apply_masks(model, heads=heads):
        masked = logits_of(model, batch)
    attn_name, _, transposed = HAND_SITES[family]
    w = dict(model.named_parameters())[attn_name.format(l=layer)]
    with torch.no_grad():
        cols = w[head * d:(head + 1) * d, :] if transposed else w[:, head * d:(head + 1) * d]
        cols.zero_()
    assert torch.allclose(masked, logits_of(model, batch), atol=1e-12, rtol=0)


def test_zero_filter_equals_zeroing_down_column_by_hand(family):
    model = make_model(family)
    batch = make_batch(kind_of(family))
    sites = get_sites(model)
    filters = torch.ones(sites.shape("filters"))
    filters[0, 5] = 0
    with apply_masks(model, filters=filters):
        masked = logits_of(model, batch)
    _, ffn_name, transposed = HAND_SITES[family]
    w = dict(model.named_parameters())[ffn_name.format(l=0)]
    with torch.no_grad():
        (w[5, :] if transposed else w[:, 5]).zero_()
    assert torch.allclose(masked, logits_of(model, batch), atol=1e-12, rtol=0)


def _capture_inputs(model, sites, layer, site):
    """The input of a layer's attn-out or ffn-out projection on a fixed batch."""
    seen = {}
    module = sites.attn_out(layer) if site == "attn" else sites.ffn_out(layer)
    h = module.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].detach().clone()))
    return h, seen


@pytest.mark.parametrize("kind", ["heads", "filters"])
def test_module_slices_own_exactly_their_unit(family, kind):
    """Perturbing the input-side slices of one unit (Q/K/V rows; up/gate rows) changes the
    projection input only in the units that share those slices — the unit itself, or its
    GQA group — and nothing else."""
    model = make_model(family)
    batch = make_batch(kind_of(family))
    sites = get_sites(model)
    params = dict(model.named_parameters())
    layer, unit = 1, 1
    site = "attn" if kind == "heads" else "ffn"
    h, seen = _capture_inputs(model, sites, layer, site)
    logits_of(model, batch)
    before = seen["x"]
    out_proj = sites.sitemap.attn_out if kind == "heads" else sites.sitemap.ffn_out
    n_units = sites.n_heads if kind == "heads" else sites.n_filters
    checked = 0
    for name, dim, idx in sites.module_slices(kind, layer, unit):
        if out_proj in name:
            continue  # the output projection's own slice does not change its input
        spec_unit = next(s.unit for s in (sites.sitemap.head_params + sites.sitemap.filter_params)
                         if name.endswith(s.path) and
                         sites.unit_index(s, unit) == idx)
        saved = params[name].detach().clone()
        with torch.no_grad():
            params[name].narrow(dim, idx.start, idx.stop - idx.start).add_(0.5)
        logits_of(model, batch)
        with torch.no_grad():
            params[name].copy_(saved)
        diff = (seen["x"] - before).abs().unflatten(-1, (n_units, -1)).amax(dim=(0, 1, 3))
        if spec_unit == "kv_head":
            group = sites.n_heads // sites.n_kv_heads
            owners = set(range((unit // group) * group, (unit // group + 1) * group))
        else:
            owners = {unit}
        changed = set(torch.nonzero(diff > 1e-12).flatten().tolist())
        assert changed <= owners, (name, changed, owners)
        # a key bias shifts every score of a query equally: softmax-invariant, so only weights
        # must show a change
        if params[name].dim() == 2:
            assert changed, name
        checked += 1
    h.remove()
    assert checked >= 2


def test_param_masks_cover_module_slices(family):
    model = make_model(family)
    sites = get_sites(model)
    heads = torch.zeros(sites.shape("heads"), dtype=torch.bool)
    heads[0, 3] = True
    filters = torch.zeros(sites.shape("filters"), dtype=torch.bool)
    filters[1, 7] = True
    pm = sites.param_masks(heads, filters, dict(model.named_parameters()))
    for kind, l, u in (("heads", 0, 3), ("filters", 1, 7)):
        for name, dim, idx in sites.module_slices(kind, l, u):
            assert pm[name].narrow(dim, idx.start, idx.stop - idx.start).all()
    # nothing else is selected: the count is exactly that of the distinct slices
    total = sum(int(m.sum()) for m in pm.values())
    ref = set()
    for kind, l, u in (("heads", 0, 3), ("filters", 1, 7)):
        for name, dim, idx in sites.module_slices(kind, l, u):
            for i in range(idx.start, idx.stop):
                ref.add((name, dim, i))
    n_ref = sum(pm[n].numel() // pm[n].shape[d] for n, d, _ in ref)
    assert total == n_ref


def test_batched_per_sample_grads_equal_loop(family):
    model = make_model(family)
    kind = kind_of(family)
    batch = make_batch(kind, bsz=6)
    with frozen(model):
        gh, gf, losses = per_sample_mask_grads(model, batch)
        for b in range(6):
            one = {k: v[b:b + 1] for k, v in batch.items()}
            h1, f1, l1 = per_sample_mask_grads(model, one)
            torch.testing.assert_close(h1[0], gh[b], rtol=1e-5, atol=1e-9)
            torch.testing.assert_close(f1[0], gf[b], rtol=1e-5, atol=1e-9)
            torch.testing.assert_close(l1[0], losses[b])


def test_per_sample_grads_equal_finite_differences(family):
    model = make_model(family)
    kind = kind_of(family)
    batch = make_batch(kind, bsz=3)
    sites = get_sites(model)
    with frozen(model):
        gh, gf, _ = per_sample_mask_grads(model, batch)
    # Llama-style RMSNorm computes in float32 even in a float64 model: there eps must sit far
    # above float32 rounding (central differences keep the truncation error O(eps²)).
    fp32_inside = family in ("llama", "mistral", "qwen2")
    eps, rtol, atol = (1e-2, 1e-3, 5e-6) if fp32_inside else (1e-6, 1e-5, 1e-9)
    for kind_name, grads, (l, u) in (("heads", gh, (1, 2)), ("filters", gf, (0, 11))):
        vals = []
        for sgn in (+1, -1):
            m = torch.ones(sites.shape(kind_name), dtype=torch.float64)
            m[l, u] += sgn * eps
            kw = {kind_name: m}
            with apply_masks(model, **kw), torch.no_grad():
                vals.append(per_sample_loss(model, batch))
        fd = (vals[0] - vals[1]) / (2 * eps)
        torch.testing.assert_close(grads[:, l, u].double(), fd, rtol=rtol, atol=atol)


def test_qa_per_sample_grads_equal_loop():
    import transformers as T
    torch.manual_seed(0)
    cfg = T.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=24, max_position_embeddings=32)
    model = T.BertForQuestionAnswering(cfg).double().eval()
    batch = make_batch("extractive_qa", bsz=4)
    with frozen(model):
        gh, gf, losses = per_sample_mask_grads(model, batch)
        for b in range(4):
            h1, f1, _ = per_sample_mask_grads(model, {k: v[b:b + 1] for k, v in batch.items()})
            torch.testing.assert_close(h1[0], gh[b], rtol=1e-5, atol=1e-9)
            torch.testing.assert_close(f1[0], gf[b], rtol=1e-5, atol=1e-9)
    assert losses.shape == (4,) and (losses > 0).all()


def test_frozen_restores_flags_and_mode():
    model = make_model("bert")
    model.train()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    flags = [p.requires_grad for p in params]
    accumulate_mask_grads(model, [make_batch("classification")])
    assert [p.requires_grad for p in params] == flags
    assert model.training
    assert all(p.grad is None for p in params)


def test_hooks_removed_even_on_error():
    model = make_model("gpt2")
    sites = get_sites(model)
    n_before = sum(len(m._forward_pre_hooks) for m in model.modules())
    with pytest.raises(RuntimeError):
        with apply_masks(model, torch.ones(sites.shape("heads"))):
            assert sum(len(m._forward_pre_hooks) for m in model.modules()) == n_before + 2 * sites.n_layers
            raise RuntimeError("boom")
    assert sum(len(m._forward_pre_hooks) for m in model.modules()) == n_before


def test_a_copy_taken_inside_a_mask_block_keeps_no_mask_after_it():
    """The app copies its shared base model while another session may be scoring on it: the
    copy carries the hook functions, which must go inert when the block ends."""
    import copy

    model = make_model("bert").eval()
    sites = get_sites(model)
    batch = make_batch("classification")
    with torch.no_grad():
        plain = model(**batch).logits
        with apply_masks(model, torch.zeros(sites.shape("heads")), torch.zeros(sites.shape("filters"))):
            masked = model(**batch).logits
            twin = copy.deepcopy(model)
        assert not torch.allclose(masked, plain)
        one = {k: v[:1] for k, v in batch.items()}  # another batch size than any batched mask
        assert torch.equal(twin(**batch).logits, plain)
        assert torch.equal(twin(**one).logits, plain[:1])


def _independent_terms(model, batches, reduce):
    """Per-sample backward on an unbatched (L, H)/(L, F) mask, one sample at a time."""
    sites = get_sites(model)
    out = {"heads": [], "filters": []}
    with frozen(model):
        for batch in batches:
            for b in range(batch["input_ids"].shape[0]):
                one = {k: v[b:b + 1] for k, v in batch.items()}
                mh = torch.ones(sites.shape("heads"), dtype=torch.float64, requires_grad=True)
                mf = torch.ones(sites.shape("filters"), dtype=torch.float64, requires_grad=True)
                with apply_masks(model, mh, mf), torch.enable_grad():
                    per_sample_loss(model, one).sum().backward()
                out["heads"].append(mh.grad.clone())
                out["filters"].append(mf.grad.clone())
    return {k: reduce(torch.stack(v)) for k, v in out.items()}


@pytest.mark.parametrize("objective", ["mlr", "mlf"])
@pytest.mark.parametrize("fam", ["bert", "llama"])
def test_scores_equal_independent_recomputation(objective, fam):
    model = make_model(fam)
    kind = kind_of(fam)
    forget = [make_batch(kind, bsz=3, seed=10)]
    retain = [make_batch(kind, bsz=4, seed=20), make_batch(kind, bsz=3, seed=21)]
    s = score_modules(model, forget, retain, objective=objective)
    grad_set, fisher_set = (forget, retain) if objective == "mlr" else (retain, forget)
    g = _independent_terms(model, grad_set, lambda t: t.sum(0))
    F = _independent_terms(model, fisher_set, lambda t: (t ** 2).mean(0))
    for k in ("heads", "filters"):
        torch.testing.assert_close(s.grad[k].double(), g[k], rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(s.fisher[k].double(), F[k], rtol=1e-5, atol=1e-10)
        torch.testing.assert_close(s[k], s.grad[k] + 0.5 * s.fisher[k])
        # block-Fisher factor: its diagonal is the Fisher
        fac = s.factor[k]
        assert fac.shape[0] == sum(b["input_ids"].shape[0] for b in fisher_set)
        torch.testing.assert_close((fac.double() ** 2).sum(0) / s.n_fisher, F[k], rtol=1e-5, atol=1e-10)


def test_mlf_argmax_and_mape_wanda_score_like_mlf_and_mape():
    """``mlf-argmax`` has MLF's terms and only flips the selection direction; ``mape+wanda``
    scores modules exactly like ``mape`` (its entry selection comes after)."""
    model = make_model("llama")
    forget = [make_batch("causal_lm", bsz=3, seed=10)]
    retain = [make_batch("causal_lm", bsz=4, seed=20)]
    mlf = score_modules(model, forget, retain, objective="mlf")
    arg = score_modules(model, forget, retain, objective="mlf-argmax")
    wan = score_modules(model, forget, retain, objective="mlf", selector="mape+wanda")
    assert not mlf.maximise and arg.maximise and not wan.maximise
    assert (arg.objective, wan.selector) == ("mlf-argmax", "mape+wanda")
    for other in (arg, wan):
        for k in ("heads", "filters"):
            assert torch.equal(other[k], mlf[k]) and torch.equal(other.factor[k], mlf.factor[k])
            assert torch.equal(other.grad[k], mlf.grad[k]) and torch.equal(other.fisher[k], mlf.fisher[k])
    # baselines record the objective but keep "higher = selected"
    assert not score_modules(model, forget, retain, objective="mlf-argmax", selector="random").maximise


def test_factor_cap_keeps_fisher_scale():
    model = make_model("bert")
    retain = [make_batch("classification", bsz=4, seed=s) for s in range(3)]
    s = score_modules(model, [make_batch("classification", bsz=2)], retain, max_factor=6)
    assert s.factor.heads.shape[0] == 6 and s.n_fisher == 12
    # rows rescaled by sqrt(12/6): the factor's Fisher estimate is the subset mean
    first6 = _independent_terms(model, retain, lambda t: (t[:6] ** 2).mean(0))
    torch.testing.assert_close((s.factor.heads.double() ** 2).sum(0) / 12, first6["heads"], rtol=1e-5, atol=1e-10)


def test_sure_scores_are_param_gradient_norms():
    model = make_model("llama")
    forget = [make_batch("causal_lm", bsz=3)]
    s = score_modules(model, forget, [], selector="sure")
    # independent: full parameter gradient, then head 1 of layer 0 by hand (GQA group 0)
    model.zero_grad()
    per_sample_loss(model, forget[0]).sum().backward()
    p = dict(model.named_parameters())
    d = 4
    parts = [p["model.layers.0.self_attn.q_proj.weight"].grad[d:2 * d],
             p["model.layers.0.self_attn.k_proj.weight"].grad[0:d],
             p["model.layers.0.self_attn.v_proj.weight"].grad[0:d],
             p["model.layers.0.self_attn.o_proj.weight"].grad[:, d:2 * d]]
    ref = torch.sqrt(sum((t.double() ** 2).sum() for t in parts))
    torch.testing.assert_close(s.heads[0, 1].double(), ref, rtol=1e-5, atol=1e-12)
    parts = [p["model.layers.1.mlp.gate_proj.weight"].grad[3], p["model.layers.1.mlp.up_proj.weight"].grad[3],
             p["model.layers.1.mlp.down_proj.weight"].grad[:, 3]]
    ref = torch.sqrt(sum((t.double() ** 2).sum() for t in parts))
    torch.testing.assert_close(s.filters[1, 3].double(), ref, rtol=1e-5, atol=1e-12)


def test_magnitude_and_random_selectors():
    model = make_model("gpt2")
    s = score_modules(model, [], [], selector="magnitude")
    w = dict(model.named_parameters())["transformer.h.1.mlp.c_fc.weight"][:, 4]
    b = dict(model.named_parameters())["transformer.h.1.mlp.c_fc.bias"][4]
    c = dict(model.named_parameters())["transformer.h.1.mlp.c_proj.weight"][4]
    ref = torch.sqrt((w ** 2).sum() + b ** 2 + (c ** 2).sum())
    torch.testing.assert_close(s.filters[1, 4].double(), ref.detach(), rtol=1e-6, atol=0)
    r1 = score_modules(model, [], [], selector="random", seed=3)
    r2 = score_modules(model, [], [], selector="random", seed=3)
    r3 = score_modules(model, [], [], selector="random", seed=4)
    assert torch.equal(r1.heads, r2.heads) and not torch.equal(r1.heads, r3.heads)
    assert set(SELECTORS.names()) >= {"mape", "sure", "random", "magnitude"}


# ---- bad input ---------------------------------------------------------------------------

def test_unsupported_model_names_supported_families():
    import transformers as T
    model = T.T5ForConditionalGeneration(T.T5Config(vocab_size=20, d_model=8, d_kv=2, d_ff=8,
                                                    num_layers=1, num_heads=2))
    with pytest.raises(ValueError, match="supported families: bert, roberta"):
        get_sites(model)


def test_empty_sets_are_refused():
    model = make_model("bert")
    with pytest.raises(ValueError, match="empty"):
        score_modules(model, [], [make_batch("classification")])
    with pytest.raises(ValueError, match="empty"):
        score_modules(model, [make_batch("classification")], [])


def test_batch_without_labels_is_refused():
    model = make_model("bert")
    batch = make_batch("classification")
    del batch["labels"]
    with pytest.raises(ValueError, match="no targets"):
        score_modules(model, [batch], [batch])


def test_wrong_mask_shape_is_refused():
    model = make_model("bert")
    with pytest.raises(ValueError, match=r"accepted: \(2, 4\)"):
        with apply_masks(model, heads=torch.ones(3, 4)):
            pass
    with pytest.raises(TypeError, match="torch.Tensor"):
        with apply_masks(model, filters=[[1.0]]):
            pass


def test_bad_objective_and_selector():
    model = make_model("bert")
    b = [make_batch("classification")]
    with pytest.raises(ValueError, match="objective must be one of"):
        score_modules(model, b, b, objective="max")
    with pytest.raises(ValueError, match="known: mape"):
        score_modules(model, b, b, selector="nope")
