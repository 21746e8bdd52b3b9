"""Unlearning engine: methods vs. hand-written loops, SO closed form, vmap Fisher, frozen
entries, successive requests, run folders and the CLI (tiny models, offline)."""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
import warnings

import pytest
import torch
import torch.nn.functional as F

from conftest import FAMILIES, make_batch, make_model
from mape_viz.sitemaps import get_sites
from mape_viz.types import ModuleMask
from mape_viz.unlearning import (METHODS, SparseParams, UnlearnConfig, config_fields, fisher_sum,
                              load_run, read_run, successive, successive_so, unlearn)
from mape_viz.losses import IDK_PREFIX

# Parameters a module owns when every head and filter is selected (hand-written, independent
# of the site maps): Q/K/V weights+biases, attention output weight, FFN up(+gate)(+bias),
# FFN down weight. Shared biases, norms, embeddings and the head are not owned.
OWNED = {
    "bert": re.compile(r"bert\.encoder\.layer\.\d+\.(attention\.self\.(query|key|value)\.(weight|bias)"
                       r"|attention\.output\.dense\.weight|intermediate\.dense\.(weight|bias)"
                       r"|output\.dense\.weight)$"),
    "llama": re.compile(r"model\.layers\.\d+\.(self_attn\.[qkvo]_proj\.weight"
                        r"|mlp\.(gate|up|down)_proj\.weight)$"),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def kind_of(family: str) -> str:
    return FAMILIES[family][2]


def data(family: str, n_forget: int = 2, n_retain: int = 2, bsz: int = 4):
    kind = kind_of(family)
    forget = [make_batch(kind, bsz=bsz, seed=10 + i) for i in range(n_forget)]
    retain = [make_batch(kind, bsz=bsz, seed=50 + i) for i in range(n_retain)]
    return forget, retain


def all_true(model) -> ModuleMask:
    s = get_sites(model)
    return ModuleMask(heads=torch.ones(s.shape("heads"), dtype=torch.bool),
                      filters=torch.ones(s.shape("filters"), dtype=torch.bool))


def random_mask(model, p: float = 0.4, seed: int = 0) -> ModuleMask:
    s = get_sites(model)
    g = torch.Generator().manual_seed(seed)
    return ModuleMask(heads=torch.rand(s.shape("heads"), generator=g) < p,
                      filters=torch.rand(s.shape("filters"), generator=g) < p)


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


# ---------------------------------------------------------------------------------------------
# Hand-written reference losses and loop


def ce(model, b):
    out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    return F.cross_entropy(out.logits, b["labels"], reduction="none")


def answer_logprob(model, b):
    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    lp = torch.log_softmax(logits[:, :-1], -1)
    lab = b["labels"][:, 1:]
    keep = lab != -100
    tok = lp.gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (tok * keep).sum(1)


def lm_nll(model, b):
    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    lp = torch.log_softmax(logits[:, :-1], -1)
    lab = b["labels"][:, 1:]
    keep = lab != -100
    tok = lp.gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(tok * keep).sum(1) / keep.sum(1).clamp(min=1)


def hand_loop(model, names, method, forget, retain, cfg, lr, kind="classification"):
    """Plain AdamW on ``names`` (everything else frozen) with the method's loss."""
    m = copy.deepcopy(model)
    ref = copy.deepcopy(model)
    P = dict(m.named_parameters())
    for p in m.parameters():
        p.requires_grad_(False)
    train = [P[n] for n in names]
    for p in train:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(train, lr=lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * len(retain if method in ("sa", "rt") else forget)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: 1.0 - s / total) if cfg.lr_schedule == "linear" else (lambda s: 1.0))
    loss_of = ce if kind == "classification" else lm_nll
    logp = (lambda mod, b: -ce(mod, b)) if kind == "classification" else answer_logprob
    beta = cfg.beta
    drive = retain if method in ("sa", "rt") else forget
    side = itertools.cycle(retain)
    for _ in range(cfg.epochs):
        for b in drive:
            if method == "ga":
                loss = -loss_of(m, b).mean()
            elif method == "gd":
                loss = -loss_of(m, b).mean() + cfg.retain_weight * loss_of(m, next(side)).mean()
            elif method == "npo":
                with torch.no_grad():
                    lr_ = logp(ref, b)
                loss = -(2 / beta) * F.logsigmoid(-beta * (logp(m, b) - lr_)).mean()
            elif method == "dpo":
                idk = {k[len(IDK_PREFIX):]: v for k, v in b.items() if k.startswith(IDK_PREFIX)}
                with torch.no_grad():
                    rw, rl = logp(ref, idk), logp(ref, b)
                loss = -(1 / beta) * F.logsigmoid(beta * (logp(m, idk) - rw)
                                                  - beta * (logp(m, b) - rl)).mean()
            elif method == "sa":
                loss = loss_of(m, b).mean() + cfg.gamma * sum(p.abs().sum() for p in train)
            elif method == "rt":
                loss = loss_of(m, b).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(train, cfg.max_grad_norm)
            opt.step()
            sched.step()
    return m


def with_idk(batches, seed=0):
    """DPO batches: the same prompts (first 3 tokens) with a different answer."""
    out = []
    for i, b in enumerate(batches):
        idk = make_batch("causal_lm", bsz=b["input_ids"].shape[0], seed=900 + seed + i)
        idk["input_ids"][:, :3] = b["input_ids"][:, :3]
        out.append({**b, **{IDK_PREFIX + k: v for k, v in idk.items()}})
    return out


CFG = UnlearnConfig(epochs=2, lr=3e-3, weight_decay=0.1, max_grad_norm=0.5, beta=0.2,
                    gamma=1e-3, score_max_retain=0)


@pytest.mark.parametrize("method", ["ga", "gd", "npo", "sa"])
@pytest.mark.parametrize("selector", ["all-true-mask", "full"])
def test_method_equals_plain_loop(method, selector):
    model = make_model("bert")
    forget, retain = data("bert")
    if selector == "full":
        names = [n for n, _ in model.named_parameters()]
        res = unlearn(model, method, "full", config=CFG, forget=forget, retain=retain)
    else:
        names = [n for n, _ in model.named_parameters() if OWNED["bert"].match(n)]
        res = unlearn(model, method, config=CFG, mask=all_true(model), forget=forget, retain=retain)
    ref = hand_loop(model, names, method, forget, retain, CFG, CFG.lr)
    got = dict(res.model.named_parameters())
    for n, p in ref.named_parameters():
        torch.testing.assert_close(got[n], p, rtol=1e-9, atol=1e-12, msg=n)
    assert res.n_changed_params > 0 and res.ok


def test_linear_schedule_equals_plain_loop():
    model = make_model("bert")
    forget, retain = data("bert")
    cfg = CFG.replace(lr_schedule="linear")
    res = unlearn(model, "gd", config=cfg, mask=all_true(model), forget=forget, retain=retain)
    names = [n for n, _ in model.named_parameters() if OWNED["bert"].match(n)]
    ref = hand_loop(model, names, "gd", forget, retain, cfg, cfg.lr)
    got = dict(res.model.named_parameters())
    for n, p in ref.named_parameters():
        torch.testing.assert_close(got[n], p, rtol=1e-9, atol=1e-12, msg=n)
    assert [h["lr"] for h in res.history] == [cfg.lr * (1 - s / 4) for s in range(4)]


def test_task_defaults_sit_between_paper_defaults_and_the_caller():
    from types import SimpleNamespace

    from mape_viz.presets import preset_targets
    from mape_viz.unlearning import as_config

    canaries = SimpleNamespace(name="toy-sentiment", meta={"options": {"forget": "canaries"}})
    rand = SimpleNamespace(name="toy-sentiment", meta={"options": {"forget": "random"}})
    tuned = preset_targets("toy-sentiment", "library", forget="canaries")["*"]
    assert as_config(None, canaries).lr == tuned["lr"]
    assert as_config({"lr": 1e-4}, canaries).lr == 1e-4
    assert as_config({"lr": 1e-4}, canaries).epochs == tuned["epochs"]
    assert as_config(UnlearnConfig(), canaries) == UnlearnConfig()  # explicit: used as is
    assert as_config(None, rand) == UnlearnConfig()  # paper defaults
    assert UnlearnConfig().epochs == 3 and UnlearnConfig().lr_for(True) == 5e-4
    assert UnlearnConfig().lr_for(False) == 5e-5


@pytest.mark.parametrize("method", ["dpo", "npo", "rt"])
def test_causal_methods_equal_plain_loop(method):
    model = make_model("llama")
    forget, retain = data("llama")
    forget = with_idk(forget)
    names = [n for n, _ in model.named_parameters() if OWNED["llama"].match(n)]
    if method == "rt":  # retraining ignores the selector: all parameters
        res = quiet(unlearn, model, method, "mape", config=CFG, forget=forget, retain=retain)
        names = [n for n, _ in model.named_parameters()]
        assert res.mask is None and res.selector == "full"
    else:
        res = unlearn(model, method, config=CFG, mask=all_true(model), forget=forget, retain=retain)
    ref = hand_loop(model, names, method, forget, retain, CFG, CFG.lr, kind="causal_lm")
    got = dict(res.model.named_parameters())
    for n, p in ref.named_parameters():
        torch.testing.assert_close(got[n], p, rtol=1e-9, atol=1e-12, msg=n)


# ---------------------------------------------------------------------------------------------
# Second order


def per_sample_grads(model, batches, kind):
    """Loop over samples: {name: (N, *shape)} full-parameter gradients."""
    P = dict(model.named_parameters())
    for p in P.values():
        p.requires_grad_(True)
    rows = {n: [] for n in P}
    loss_of = ce if kind == "classification" else lm_nll
    for b in batches:
        for i in range(b["input_ids"].shape[0]):
            bi = {k: v[i:i + 1] for k, v in b.items()}
            gs = torch.autograd.grad(loss_of(model, bi).sum(), list(P.values()), allow_unused=True)
            for n, g in zip(P, gs):
                rows[n].append(torch.zeros_like(P[n]) if g is None else g)
    for p in P.values():
        p.requires_grad_(False)
    return {n: torch.stack(v) for n, v in rows.items()}


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("masked", [True, False])
def test_so_equals_closed_form(family, masked):
    model = make_model(family)
    forget, retain = data(family, n_retain=3)
    eta, lam = 1e-3, 1e-2
    cfg = UnlearnConfig(eta=eta, damping=lam, fisher_batch_size=3)
    mask = random_mask(model) if masked else None
    res = unlearn(model, "so", "full", config=cfg, mask=mask, forget=forget, retain=retain)
    gf = per_sample_grads(copy.deepcopy(model), forget, kind_of(family))
    gr = per_sample_grads(copy.deepcopy(model), retain, kind_of(family))
    P = dict(model.named_parameters())
    allowed = (get_sites(model).param_masks(mask.heads, mask.filters, P) if masked
               else {n: torch.ones_like(p, dtype=torch.bool) for n, p in P.items()})
    got = dict(res.model.named_parameters())
    for n, p in P.items():
        expected = p + eta * gf[n].sum(0) / ((gr[n] ** 2).mean(0) + lam)
        a = allowed.get(n, torch.zeros_like(p, dtype=torch.bool))
        torch.testing.assert_close(got[n][a], expected[a], rtol=1e-8, atol=1e-12, msg=n)
        assert torch.equal(got[n][~a], p[~a]), n
    assert res.history[0]["n_retain"] == 12 and res.history[0]["n_forget"] == 8


def test_hooks_engine_refuses_whole_parameters():
    model = make_model("bert")
    sp = SparseParams(model, None)
    with pytest.raises(ValueError, match="slices only"):
        fisher_sum(model, sp, [make_batch("classification")], "classification", engine="hooks")


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama", "qwen2"])
@pytest.mark.parametrize("engine", ["vmap", "hooks"])
def test_fisher_engines_equal_per_sample_loop(family, engine):
    model = make_model(family)
    _, retain = data(family, n_retain=2)
    work = copy.deepcopy(model)
    sp = SparseParams(work, random_mask(work, 0.5, seed=1), include_head=engine == "vmap")
    sums, n = fisher_sum(work, sp, retain, kind_of(family), chunk=3, engine=engine)
    g = per_sample_grads(copy.deepcopy(model), retain, kind_of(family))
    assert n == 8
    for s, t in zip(sp.specs, sums[:len(sp.specs)]):
        torch.testing.assert_close(t, (g[s.name] ** 2).sum(0).index_select(s.dim, s.index),
                                   rtol=1e-9, atol=1e-15, msg=s.name)
    for name, t in zip(sp.whole, sums[len(sp.specs):]):
        torch.testing.assert_close(t, (g[name] ** 2).sum(0), rtol=1e-9, atol=1e-15, msg=name)
    # the slices are gathered: the trained tensors are smaller than their parameters
    assert sum(v.numel() for v in sp.values) < sum(s.param.numel() for s in sp.specs)


# ---------------------------------------------------------------------------------------------
# Frozen entries stay bit-identical

FROZEN_CFG = UnlearnConfig(epochs=1, max_steps=2, lr=5e-2, weight_decay=0.5, eta=1e-2,
                           damping=1e-2, score_max_retain=0, refine="greedy")
FROZEN_CASES = [(fam, meth) for fam in ("bert", "gpt2", "llama")
                for meth in ("so", "ga", "gd", "npo", "sa", "dpo")
                if meth != "dpo" or kind_of(fam) == "causal_lm"]


@pytest.mark.parametrize("family,method", FROZEN_CASES)
def test_frozen_entries_bit_identical(family, method):
    model = make_model(family, dtype=torch.float32)
    forget, retain = data(family, n_forget=1, n_retain=1)
    if method == "dpo":
        forget = with_idk(forget)
    P0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    for selector in ("mape", "sure", "random", "magnitude"):
        res = unlearn(model, method, selector, 0.5, FROZEN_CFG, forget=forget, retain=retain)
        assert res.mask is not None and res.ok
        allowed = get_sites(model).param_masks(res.mask.heads, res.mask.filters, P0)
        changed = 0
        for n, p in res.model.named_parameters():
            a = allowed.get(n)
            if a is None:
                assert torch.equal(p, P0[n]), f"{selector}: {n} is not owned by any module"
            else:
                assert torch.equal(p[~a], P0[n][~a]), f"{selector}: frozen entries of {n} moved"
                changed += int((p[a] != P0[n][a]).sum())
        assert changed > 0 and changed == res.n_changed_params
    # the input model is never modified; the result has the input's requires_grad flags
    assert all(torch.equal(p, P0[n]) for n, p in model.named_parameters())
    assert all(p.requires_grad for p in res.model.parameters())


def test_include_head_trains_the_head_only_beyond_the_mask():
    model = make_model("bert", dtype=torch.float32)
    forget, retain = data("bert", 1, 1)
    cfg = FROZEN_CFG.replace(include_head=True)
    res = unlearn(model, "ga", "random", 0.5, cfg, forget=forget, retain=retain)
    got = dict(res.model.named_parameters())
    for n, p in model.named_parameters():
        if n.startswith("classifier.") or n.startswith("bert.pooler."):  # the head
            assert not torch.equal(got[n], p), n
        elif "embeddings" in n or "LayerNorm" in n:
            assert torch.equal(got[n], p), n
    # GPT-2's LM head is tied to the input embeddings: never part of the head
    from mape_viz.unlearning import head_param_names

    assert head_param_names(make_model("gpt2")) == []
    assert head_param_names(make_model("llama")) == ["lm_head.weight"]


# ---------------------------------------------------------------------------------------------
# Losses, faults, bad input


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_npo_step0_loss_is_2_over_beta_log2(beta):
    model = make_model("gpt2")
    forget, retain = data("gpt2", 1, 1)
    res = unlearn(model, "npo", "random", 0.5, dict(beta=beta, max_steps=1, score_max_retain=0),
                  forget=forget, retain=retain)
    assert res.history[0]["loss"] == pytest.approx(2 / beta * math.log(2), rel=1e-12)
    assert METHODS.get("npo").needs == ("forget", "reference")
    assert UnlearnConfig().beta == 0.1


def test_ga_raises_the_forget_loss():
    model = make_model("gpt2", dtype=torch.float32)
    forget, retain = data("gpt2")
    res = unlearn(model, "ga", "mape", 0.5, dict(epochs=3, lr=1e-2, score_max_retain=0),
                  forget=forget, retain=retain)
    with torch.no_grad():
        before = torch.cat([lm_nll(model, b) for b in forget]).mean()
        after = torch.cat([lm_nll(res.model, b) for b in forget]).mean()
        kept = torch.cat([lm_nll(res.model, b) for b in retain]).mean()
    assert after > before + 0.1 and math.isfinite(kept)
    losses = [h["forget_loss"] for h in res.history]
    assert losses[-1] > losses[0]


def test_method_that_does_not_fit_lists_the_ones_that_do():
    model = make_model("bert")
    forget, retain = data("bert", 1, 1)
    with pytest.raises(ValueError, match=r"dpo.*classification.*so, ga, gd, npo, sa, rt"):
        unlearn(model, "dpo", "full", forget=forget, retain=retain)
    with pytest.raises(ValueError, match="unknown method"):
        unlearn(model, "nope", "full", forget=forget, retain=retain)
    with pytest.raises(ValueError, match="unknown selector"):
        unlearn(model, "ga", "best", forget=forget, retain=retain)
    with pytest.raises(ValueError, match="sparsity"):
        unlearn(model, "ga", "random", 1.0, forget=forget, retain=retain)
    with pytest.raises(ValueError, match="needs a retain set"):
        unlearn(model, "gd", "full", forget=forget)
    with pytest.raises(ValueError, match="invalid unlearning config"):
        UnlearnConfig(lr=-1.0)


def test_nan_loss_stops_with_last_good_state():
    model = make_model("bert", dtype=torch.float32)
    forget = [make_batch("classification", seed=s) for s in (1, 2, 5)]
    retain = [make_batch("classification", seed=3)]
    cfg = dict(lr=1e30, max_grad_norm=0.0, weight_decay=0.0)
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        res = unlearn(model, "ga", "full", config=cfg, forget=forget, retain=retain)
    assert not res.ok and "non-finite loss at step 1" in res.error
    assert res.history[-1]["stopped"] and math.isnan(res.history[-1]["loss"])
    one = unlearn(model, "ga", "full", config={**cfg, "max_steps": 1}, forget=forget, retain=retain)
    for (n, p), q in zip(res.model.named_parameters(), one.model.parameters()):
        assert torch.equal(p, q), n
        assert torch.isfinite(p).all()


def test_callbacks_add_metrics_to_history():
    model = make_model("bert", dtype=torch.float32)
    forget, retain = data("bert")
    seen = []

    def cb(step, m, row):
        seen.append(step)
        with torch.no_grad():
            return {"forget_ce": float(torch.cat([ce(m, b) for b in forget]).mean())}

    res = unlearn(model, "ga", "random", 0.5, dict(epochs=1, score_max_retain=0),
                  forget=forget, retain=retain, callbacks=[cb])
    assert seen == [1, 2] and [h["step"] for h in res.history] == [0, 1]
    assert all("forget_ce" in h for h in res.history)
    assert res.peak_memory_kind in ("cpu_rss_peak_delta", "cuda_max_allocated")


# ---------------------------------------------------------------------------------------------
# Successive unlearning


def test_successive_requests_on_the_current_model():
    model = make_model("bert", dtype=torch.float32)
    forget, retain = data("bert", n_forget=2)
    requests = [[forget[0]], [forget[1]]]

    def metrics(m, t):
        with torch.no_grad():
            return {"forget_ce": float(torch.cat([ce(m, b) for b in forget]).mean())}

    out = successive(model, requests, "ga", "mape", 0.5,
                     dict(epochs=2, lr=1e-2, score_max_retain=0), retain=retain, metrics=metrics)
    assert [s["request"] for s in out.steps] == [1, 2] and len(out.masks) == 2
    ce_path = out.metric("forget_ce")
    assert ce_path[0] < ce_path[1] < ce_path[2]
    assert out.results[0].model is None  # intermediate models are dropped by default
    assert out.results[1].model is out.model


def test_successive_so_equals_eq12_closed_form():
    model = make_model("bert")
    D = [make_batch("classification", bsz=5, seed=70 + i) for i in range(3)]
    sl = lambda b, i, j: {k: v[i:j] for k, v in b.items()}  # noqa: E731
    requests = [[sl(D[0], 0, 2)], [sl(D[1], 1, 3), sl(D[2], 4, 5)]]
    removed = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 4)]
    eta, lam = 1e-3, 1e-2
    models = []
    out = successive_so(model, requests, dict(eta=eta, damping=lam, fisher_batch_size=4),
                        data=D, sparsity=0.5, metrics=lambda m, t: models.append(copy.deepcopy(m)) or {})
    g = per_sample_grads(copy.deepcopy(model), D, "classification")  # (15, ...) in D's order
    P = dict(model.named_parameters())
    counts = [2, 5]
    for t, (m_t, mask) in enumerate(zip(models[1:], out.masks)):
        gone = [b * 5 + i for b, i in removed[:counts[t]]]
        kept = [k for k in range(15) if k not in gone]
        allowed = get_sites(model).param_masks(mask.heads, mask.filters, P)
        got = dict(m_t.named_parameters())
        for n, p in P.items():
            exp = p + eta * g[n][gone].sum(0) / ((g[n][kept] ** 2).mean(0) + lam)
            a = allowed.get(n, torch.zeros_like(p, dtype=torch.bool))
            torch.testing.assert_close(got[n][a], exp[a], rtol=1e-7, atol=1e-12, msg=n)
            assert torch.equal(got[n][~a], p[~a]), n
        assert out.steps[t]["n_retain"] == len(kept)
    # Eq. 13: the warm start selects the modules with the largest mask Fisher on D
    from mape_viz.gradients import accumulate_mask_grads

    st = accumulate_mask_grads(model, D, "classification", max_factor=0)
    for kind in ("heads", "filters"):
        fisher = st.sq_sum[kind].flatten()
        k = int(out.masks[0].warm_start[kind].sum())
        top = set(torch.argsort(fisher, descending=True, stable=True)[:k].tolist())
        assert set(torch.nonzero(out.masks[0].warm_start[kind].flatten()).flatten().tolist()) == top


# ---------------------------------------------------------------------------------------------
# Run folders and the CLI


def test_save_and_load_run_rebuild_exactly(tmp_path):
    model = make_model("llama", dtype=torch.float32)
    forget, retain = data("llama", 1, 1)
    for selector in ("mape", "full"):
        res = unlearn(model, "gd", selector, 0.5, dict(max_steps=2, score_max_retain=0),
                      forget=forget, retain=retain)
        folder = res.save(tmp_path / selector)
        rebuilt = load_run(folder, model)
        for (n, p), q in zip(res.model.named_parameters(), rebuilt.parameters()):
            assert torch.equal(p, q), n
        info = read_run(folder)
        assert info["config"]["method"] == "gd" and info["metrics"]["ok"]
        if selector == "mape":
            assert torch.equal(info["mask"].heads, res.mask.heads)
            # only the selected slices are stored
            from safetensors import safe_open

            with safe_open(str(folder / "weights.safetensors"), "pt") as f:
                stored = sum(f.get_tensor(k).numel() for k in f.keys() if k.endswith("::values"))
            assert stored == res.n_trainable_params < sum(p.numel() for p in model.parameters())
        with pytest.raises(FileExistsError):
            res.save(folder)
    with pytest.raises(ValueError, match="fingerprints differ"):
        load_run(tmp_path / "mape", make_model("llama", dtype=torch.float32, seed=1))


def test_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
    import mape_viz.unlearning.result as result_mod

    model = make_model("bert", dtype=torch.float32)
    forget, retain = data("bert", 1, 1)
    res = unlearn(model, "ga", "random", 0.5, dict(max_steps=1, score_max_retain=0),
                  forget=forget, retain=retain)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(result_mod, "save_weights", boom)
    with pytest.raises(KeyboardInterrupt):
        res.save(tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def _tiny_folders(tmp_path):
    """A tiny BERT classifier folder (word tokenizer) and a data folder of jsonl splits."""
    import transformers as T

    from mape_viz.tasks.tokenizer import build_word_tokenizer

    words = ["good", "bad", "movie", "plot", "was", "not", "very", "the"]
    rng = torch.Generator().manual_seed(0)
    rows = []
    for i in range(40):
        idx = torch.randint(0, len(words), (5,), generator=rng).tolist()
        rows.append({"text": " ".join(words[j] for j in idx), "label": int("good" in
                     [words[j] for j in idx])})
    tok = build_word_tokenizer([r["text"] for r in rows], "bert")
    torch.manual_seed(0)
    cfg = T.BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=24, max_position_embeddings=32,
                       num_labels=2, pad_token_id=tok.pad_token_id)
    model = T.BertForSequenceClassification(cfg).eval()
    mdir, ddir = tmp_path / "model", tmp_path / "data"
    model.save_pretrained(mdir)
    tok.save_pretrained(mdir)
    ddir.mkdir()
    for name, part in (("forget", rows[:8]), ("retain", rows[8:32]), ("test", rows[32:])):
        (ddir / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return mdir, ddir


def test_cli_writes_run_folder_refuses_overwrite_and_load_run_rebuilds(tmp_path, capsys):
    from mape_viz.cli import main
    from mape_viz.metrics import evaluate
    from mape_viz.tasks.local import load_local_task

    mdir, ddir = _tiny_folders(tmp_path)
    out = tmp_path / "run"
    argv = ["unlearn", "--model", str(mdir), "--data", str(ddir), "--method", "npo",
            "--selector", "mape", "--sparsity", "0.5", "--out", str(out), "--epochs", "1",
            "--lr", "1e-2", "--quiet", "--device", "cpu", "--seed", "3"]
    assert main(argv) == 0
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.json", "mask",
                                               "weights.safetensors"}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "npo" and cfg["config"]["lr"] == 1e-2 and cfg["seed"] == 3
    metrics = json.loads((out / "metrics.json").read_text())
    stamp = (out / "weights.safetensors").stat().st_mtime_ns
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err
    assert (out / "weights.safetensors").stat().st_mtime_ns == stamp
    task = load_local_task(mdir, ddir)
    rebuilt = load_run(out, task.model)
    again = evaluate(task, rebuilt)
    assert again["forget_acc"] == metrics["metrics"]["forget_acc"]
    assert again["test_acc"] == metrics["metrics"]["test_acc"]
    assert main(argv + ["--overwrite"]) == 0
    assert main(["unlearn", "--model", str(mdir), "--data", str(ddir), "--method", "dpo",
                 "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "methods that fit" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_cli_flags_cover_every_config_field():
    from mape_viz.cli import SUBCOMMANDS, build_parser

    assert "unlearn" in SUBCOMMANDS
    help_text = build_parser()._subparsers._group_actions[0].choices["unlearn"].format_help()
    for f in config_fields():
        assert "--" + f.name.replace("_", "-") in help_text, f.name
    args = build_parser().parse_args(["unlearn", "--method", "ga", "--lr", "3e-4",
                                      "--no-include-head", "--refine", "none"])
    from mape_viz.cli import dataclass_overrides

    assert dataclass_overrides(args) == {"lr": 3e-4, "include_head": False, "refine": "none"}


def test_task_objects_with_datasets_and_dpo_idk():
    """The Task path: datasets batched by the task (shuffled per epoch), DPO idk answers."""
    import datasets

    from mape_viz.tasks.collate import CausalLMCollator
    from mape_viz.tasks.tokenizer import build_word_tokenizer
    from mape_viz.tasks import Task

    qa = [{"question": f"who wrote book {i}", "answer": f"author {i % 5} did"} for i in range(12)]
    idk = ["i do not know", "no idea"]
    tok = build_word_tokenizer([r["question"] + " " + r["answer"] for r in qa] + idk +
                               ["question answer"], "llama")
    import transformers as T

    torch.manual_seed(0)
    model = T.LlamaForCausalLM(T.LlamaConfig(vocab_size=len(tok), hidden_size=16,
                                             num_hidden_layers=2, num_attention_heads=4,
                                             num_key_value_heads=2, intermediate_size=24,
                                             max_position_embeddings=64,
                                             pad_token_id=tok.pad_token_id)).eval()
    ds = datasets.Dataset.from_list(qa)
    task = Task(model=model, tokenizer=tok, forget=ds.select(range(4)),
                      retain=ds.select(range(4, 12)), test=None, collate=CausalLMCollator(tok),
                      kind="causal_lm", extras={"idk": idk})
    res = unlearn(task, "dpo", "mape", 0.5, dict(epochs=2, batch_size=2, score_max_retain=0))
    assert res.ok and len(res.history) == 4 and res.n_changed_params > 0
    assert res.history[0]["loss"] == pytest.approx(2 / 0.1 * math.log(2) / 2, rel=1e-6)


@pytest.fixture(scope="module")
def tiny_cls_task(tmp_path_factory):
    """A Task (tiny BERT, word tokenizer, datasets) built in memory."""
    import datasets

    from mape_viz.tasks import Task
    from mape_viz.tasks.local import collator_for, load_model_folder

    mdir, ddir = _tiny_folders(tmp_path_factory.mktemp("task"))
    model, tok, kind = load_model_folder(mdir)
    rows = [json.loads(line) for f in ("forget", "retain") for line in
            (ddir / f"{f}.jsonl").read_text().splitlines()]
    ds = datasets.Dataset.from_list(rows)
    return Task(model=model, tokenizer=tok, forget=ds.select(range(8)),
                      retain=ds.select(range(8, 32)), test=None,
                      collate=collator_for(kind, tok, ds.column_names), kind=kind)


def test_successive_with_a_task_and_dataset_requests(tiny_cls_task):
    task = tiny_cls_task
    reqs = [task.forget.select([0, 1, 2]), task.forget.select([3, 4])]
    out = successive(task, reqs, "npo", "mape", 0.5, dict(epochs=1, batch_size=2, lr=1e-2),
                     metrics=lambda m, t: {"t": t})
    assert [s["t"] for s in out.steps] == [1, 2] and out.initial_metrics == {"t": 0}
    assert all(r.ok for r in out.results) and out.model is out.results[-1].model
    # (b) from a task: D = forget + retain; requests are rows of D
    b = successive_so(task, reqs, dict(eta=1e-3, damping=1e-2), sparsity=0.5)
    assert [s["n_retain"] for s in b.steps] == [29, 27] and len(b.masks) == 2
    full = successive_so(task, reqs[:1], dict(eta=1e-3, damping=1e-2), selector="full")
    assert full.masks == [None] and full.steps[0]["finite"]


def test_cli_ctrl_c_leaves_no_folder(tmp_path, monkeypatch, capsys):
    import mape_viz.unlearning as api
    import mape_viz.unlearning.result as result_mod
    from mape_viz.cli import main

    mdir, ddir = _tiny_folders(tmp_path)
    argv = ["unlearn", "--model", str(mdir), "--data", str(ddir), "--method", "ga",
            "--selector", "random", "--sparsity", "0.5", "--max-steps", "1", "--quiet",
            "--no-eval"]

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(result_mod, "save_weights", interrupt)  # Ctrl-C while writing
    assert main(argv + ["--out", str(tmp_path / "a")]) == 130
    monkeypatch.setattr(api, "unlearn", interrupt)  # Ctrl-C while unlearning
    assert main(argv + ["--out", str(tmp_path / "b")]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "model"]


# ---------------------------------------------------------------------------------------------
# The registry: methods carry their runner; hooks never outlive their block


@pytest.fixture
def scratch_methods(monkeypatch):
    """Register test methods into a copy of the registry, dropped after the test."""
    from mape_viz.unlearning import METHODS

    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))
    monkeypatch.setattr(METHODS, "_help", dict(METHODS._help))
    return METHODS


def test_a_registered_method_runs_through_its_runner(scratch_methods):
    """The engine hands the run to the method's runner and reports what it returns."""
    from mape_viz.unlearning import register_method
    from mape_viz.unlearning.methods import RunOutcome

    seen = {}

    def runner(run):
        seen.update(mask=run.mask, kind=run.kind, reference=run.reference,
                    n_forget=run.forget.n_samples, retain=run.retain)
        with torch.no_grad():
            next(run.model.parameters()).add_(1.0)
        return RunOutcome(model=run.model, history=[{"step": 0, "loss": 0.5}],
                          changes={}, n_trainable=7, meta={"eta": 1.0},
                          timings={"toy_seconds": 0.0})

    m = register_method("toy", family="custom", objective="mlr", drive="forget",
                        needs=("forget", "reference"), runner=runner, description="a test method",
                        fields=("eta",), main_fields=("eta",))
    assert scratch_methods.get("toy") is m and scratch_methods.help("toy") == "a test method"
    model = make_model("bert")
    before = [p.detach().clone() for p in model.parameters()]
    forget, retain = data("bert", 2, 1)
    res = quiet(unlearn, model, "toy", "random", 0.5, dict(score_max_retain=0), forget=forget,
                retain=retain)
    assert seen["mask"] is res.mask and res.mask is not None and seen["kind"] == "classification"
    assert seen["reference"] is model and seen["n_forget"] == 8 and seen["retain"] is not None
    assert res.history == [{"step": 0, "loss": 0.5}] and res.n_trainable_params == 7
    assert res.meta["eta"] == 1.0 and "toy_seconds" in res.meta["timings"]
    assert res.n_changed_params > 0 and res.ok and res.model is not model
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))  # input untouched


def test_register_method_refuses_bad_entries(scratch_methods):
    from mape_viz.unlearning import register_method
    from mape_viz.unlearning.methods import finetune_runner

    ok = dict(family="finetune", objective="mlf", drive="forget", needs=("forget",),
              runner=finetune_runner, fields=("lr",), main_fields=("lr",))
    for bad, match in [(dict(objective="mlx"), "objective='mlx'"),
                       (dict(drive="test"), "drive='test'"),
                       (dict(needs=("forget", "teacher")), "needs.*teacher"),
                       (dict(fields=("lr", "learning_rate")), "learning_rate.*not UnlearnConfig"),
                       (dict(main_fields=("beta",)), "main_fields.*beta")]:
        with pytest.raises(ValueError, match=match):
            register_method("bad", **{**ok, **bad})
    with pytest.raises(ValueError, match="already registered"):
        register_method("ga", **ok)
    assert "bad" not in scratch_methods


def test_npo_reads_a_retain_batch_only_with_a_retain_weight():
    model = make_model("bert")
    forget, retain = data("bert", 2, 1)
    plain = unlearn(model, "npo", "full", config=dict(epochs=1), forget=forget)  # no retain
    assert plain.ok and "retain_loss" not in plain.history[0]
    with pytest.raises(ValueError, match="'npo' needs a retain set"):
        unlearn(model, "npo", "full", config=dict(epochs=1, npo_retain_weight=1.0),
                forget=forget)
    both = unlearn(model, "npo", "full", config=dict(epochs=1, npo_retain_weight=1.0),
                   forget=forget, retain=retain)
    assert both.ok and "retain_loss" in both.history[0]


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("engine", ["hooks", "vmap"])
def test_no_hook_outlives_its_block(engine):
    model = make_model("bert")
    sp = SparseParams(model, random_mask(model, 0.5))
    with sp.attached():
        assert _hook_count(model) == len(sp.by_module) > 0
    assert _hook_count(model) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with sp.attached():
            raise RuntimeError("boom")
    assert _hook_count(model) == 0
    fisher_sum(model, sp, [make_batch("classification")], "classification", engine=engine)
    assert _hook_count(model) == 0
    with pytest.raises(KeyError):  # a batch without labels fails inside the pass
        bad = {k: v for k, v in make_batch("classification").items() if k != "labels"}
        fisher_sum(model, sp, [bad], "classification", engine=engine)
    assert _hook_count(model) == 0
