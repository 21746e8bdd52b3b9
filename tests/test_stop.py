"""Stop when forgotten, the fidelity guard, SO's η ladder and peak memory (tiny models,
offline; docs/design.md §5).

Every stopping test checks against an independent per-step loop: the same run without a stop
rule, with a callback that measures the forget (or check-set) accuracy after each update by a
plain argmax; the first step where the criterion holds is found from that series, and the
stopped run's model must equal the run with ``max_steps`` = that step, bit for bit.
"""

from __future__ import annotations

import json
import random
import warnings

import pytest
import torch

from conftest import make_batch, make_model
from mape_viz import load_task
from mape_viz.cli import build_parser
from mape_viz.cli._flags import dataclass_overrides
from mape_viz.metrics import evaluate
from mape_viz.sitemaps import get_sites
from mape_viz.types import ModuleMask
from mape_viz.unlearning import UnlearnConfig, read_run, unlearn
from mape_viz.unlearning.memory import MemoryMeter
from mape_viz.unlearning.methods import eta_ladder
from mape_viz.unlearning.stopping import parse_stop_rule
from tiny_tasks import accuracy_of, tiny_task


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task():
    return tiny_task()


@pytest.fixture(scope="module")
def mask(task):
    """Half of the heads and filters (fixed: the runs compared share it, and no scoring)."""
    s = get_sites(task.model)
    g = torch.Generator().manual_seed(0)
    return ModuleMask(heads=torch.rand(s.shape("heads"), generator=g) < 0.5,
                      filters=torch.rand(s.shape("filters"), generator=g) < 0.5)


def run(task, method, mask, **cfg):
    base = dict(epochs=20, batch_size=4, score_max_retain=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return unlearn(task, method, "mape", 0.5, UnlearnConfig(**{**base, **cfg}), mask=mask)


def per_step(task, method, mask, rows, n, **cfg):
    """Accuracy on ``rows`` before the run and after each of ``n`` updates (no stop rule)."""
    series = [accuracy_of(task.model, task, rows)]

    def cb(step, model, row):
        series.append(accuracy_of(model, task, rows))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unlearn(task, method, "mape", 0.5,
                UnlearnConfig(**{**dict(epochs=20, batch_size=4), **cfg, "max_steps": n}),
                mask=mask, callbacks=[cb])
    assert len(series) == n + 1
    return series


def same_params(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def first_check(series, holds, every, n):
    """The first checked step (0, every, 2·every, ..., and n) where ``holds``."""
    for t in range(n + 1):
        if (t % every == 0 or t == n) and holds(series[t]):
            return t
    return None


# method, lr, rule, threshold test on the forget accuracy
CASES = [
    ("ga", 1e-2, "flipped", lambda a: a == 0.0),
    ("npo", 3e-3, "forget-acc<=0.25", lambda a: a <= 0.25),
    ("gd", 1e-2, "forget-acc<=0.125", lambda a: a <= 0.125),
    ("sa", 3e-3, "forget-acc<=0.625", lambda a: a <= 0.625),
]


@pytest.mark.parametrize("method,lr,rule,holds", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("every", [1, 3])
def test_stops_at_the_first_checked_step_where_the_rule_holds(task, mask, method, lr, rule,
                                                              holds, every):
    n = 16
    series = per_step(task, method, mask, task.forget, n, lr=lr)
    s = first_check(series, holds, every, n)
    assert s is not None and 0 < s < n, f"the case must stop inside the run: {series}"
    res = run(task, method, mask, lr=lr, stop_when=rule, stop_every=every, max_steps=n)
    assert (res.stopped_at, res.stop_reason) == (s, "criterion")
    assert len(res.history) == s and res.steps == s
    checks = res.meta["stop"]["checks"]
    assert [c["step"] for c in checks] == [t for t in range(s + 1) if t % every == 0 or t == s]
    assert [c["check_forget_acc"] for c in checks] == [series[c["step"]] for c in checks]
    assert accuracy_of(res.model, task, task.forget) == series[s]
    same_budget = run(task, method, mask, lr=lr, max_steps=s)
    assert same_budget.stop_reason == "max_steps"
    assert same_params(res.model, same_budget.model)


def test_never_past_max_steps_and_the_reason_says_why(task, mask):
    res = run(task, "gd", mask, lr=1e-3, stop_when="flipped", max_steps=5)
    assert (res.stopped_at, res.stop_reason) == (5, "max_steps")
    assert [c["step"] for c in res.meta["stop"]["checks"]] == [0, 1, 2, 3, 4, 5]
    res = run(task, "gd", mask, lr=1e-3, stop_when="flipped", stop_every=4, max_steps=6)
    assert (res.stopped_at, res.stop_reason) == (6, "max_steps")
    assert [c["step"] for c in res.meta["stop"]["checks"]] == [0, 4, 6]  # the last is checked
    res = run(task, "ga", mask, lr=1e-4, epochs=1, stop_when="flipped")  # 8 rows / 4 = 2 steps
    assert (res.stopped_at, res.stop_reason) == (2, "epochs done")
    res = run(task, "ga", mask, lr=1e-4, epochs=1)
    assert (res.stopped_at, res.stop_reason, res.meta.get("stop")) == (2, "epochs done", None)


def test_a_rule_that_already_holds_stops_before_any_update(task, mask):
    res = run(task, "ga", mask, lr=1e-2, stop_when="forget-acc<=1")
    assert (res.stopped_at, res.stop_reason, res.history) == (0, "criterion", [])
    assert same_params(res.model, task.model) and res.n_changed_params == 0


def test_retrained_rule_reads_the_retrained_models_forget_accuracy(task, mask):
    target = accuracy_of(task.retrained_model, task, task.forget)
    assert 0 < target < 1
    res = run(task, "ga", mask, lr=3e-3, stop_when="retrained", max_steps=16)
    assert res.meta["stop"]["target"] == target
    assert res.stop_reason == "criterion" and res.meta["stop"]["checks"][-1][
        "check_forget_acc"] <= target < res.meta["stop"]["checks"][-2]["check_forget_acc"]
    # a forget subset of the task's forget rows: the retrained model never saw it either
    sub = task.forget.select([0, 1, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = unlearn(task, "ga", "mape", 0.5, UnlearnConfig(lr=3e-3, batch_size=4,
                                                             stop_when="retrained"),
                      forget=sub, mask=mask)
    assert res.meta["stop"]["target"] == accuracy_of(task.retrained_model, task, sub)
    # rows the retrained model was trained on, or a task without one: a clear error
    with pytest.raises(ValueError, match="never saw the forget rows"):
        unlearn(task, "ga", "mape", 0.5, UnlearnConfig(stop_when="retrained"),
                forget=task.retain.select([0, 1]), mask=mask)
    with pytest.raises(ValueError, match="never saw the forget rows.*forget-acc<=X"):
        unlearn(task.replace(retrained_model=None), "ga", "mape", 0.5,
                UnlearnConfig(stop_when="retrained"), mask=mask)


def test_guard_returns_the_last_checked_model_within_it(task, mask):
    n, drop = 12, 0.25
    series = per_step(task, "ga", mask, task.test, n, lr=1e-2)
    for every in (1, 2):
        checked = [t for t in range(n + 1) if t % every == 0 or t == n]
        trip = next(t for t in checked if series[0] - series[t] > drop)
        good = max(t for t in checked if t < trip)
        assert 0 < good, f"the case must trip after the first check: {series}"
        res = run(task, "ga", mask, lr=1e-2, guard_drop=drop, guard_rows=0, stop_every=every,
                  max_steps=n)
        assert (res.stopped_at, res.stop_reason) == (good, "guard")
        stop = res.meta["stop"]
        assert stop["start_guard_acc"] == series[0] == 1.0
        assert [c["guard_acc"] for c in stop["checks"]] == [series[t] for t in checked
                                                             if t <= trip]
        assert stop["checks"][-1]["verdict"] == "guard" and len(res.history) == good
        assert same_params(res.model, run(task, "ga", mask, lr=1e-2, max_steps=good).model)


def test_guard_check_set_is_a_seeded_subsample(task, mask):
    res = run(task, "ga", mask, lr=1e-4, guard_drop=0.5, guard_rows=5, max_steps=1)
    idx = sorted(random.Random(0).sample(range(len(task.test)), 5))
    assert res.meta["stop"]["start_guard_acc"] == accuracy_of(task.model, task,
                                                              task.test.select(idx))
    assert res.stop_reason == "max_steps"
    config = UnlearnConfig(epochs=20, batch_size=4, score_max_retain=16, guard_drop=0.05,
                           max_steps=1)
    with pytest.warns(RuntimeWarning, match="fidelity guard off.*held-out rows"):
        unguarded = unlearn(task.replace(test=None), "ga", "mape", 0.5, config, mask=mask)
    assert unguarded.stop_reason == "max_steps"
    assert unguarded.meta["stop"]["guard_drop"] is None


@pytest.mark.parametrize("x", [0.625, 0.4])
def test_so_walks_the_eta_ladder_and_keeps_the_first_rung_that_forgets(task, mask, x):
    eta, n = 2e-3, 6
    etas = eta_ladder(eta, n)
    assert etas[-1] == eta and etas[0] == eta / 32
    rule = f"forget-acc<={x}"
    holds = lambda a: a <= x  # noqa: E731
    one_shot = [run(task, "so", mask, eta=e, fisher_max_samples=16) for e in etas]
    accs = [accuracy_of(r.model, task, task.forget) for r in one_shot]
    first = next((i for i, a in enumerate(accs, 1) if holds(a)), None)
    assert first is not None and 1 < first <= n, f"the ladder must be walked: {accs}"
    res = run(task, "so", mask, eta=eta, fisher_max_samples=16, stop_when=rule, eta_ladder=n)
    assert (res.stopped_at, res.stop_reason) == (first, "criterion")
    assert res.meta["eta"] == etas[first - 1] and res.meta["eta_ladder"] == etas
    assert [c["check_forget_acc"] for c in res.meta["stop"]["checks"]] == \
        [accuracy_of(task.model, task, task.forget)] + accs[:first]
    assert same_params(res.model, one_shot[first - 1].model)
    never = run(task, "so", mask, eta=eta, fisher_max_samples=16, stop_when="forget-acc<=0",
                eta_ladder=n)
    assert (never.stopped_at, never.stop_reason) == (n, "eta ladder done")
    assert same_params(never.model, one_shot[-1].model)
    # the guard alone walks the ladder too, and keeps the last rung within it
    tests = [1.0] + [accuracy_of(r.model, task, task.test) for r in one_shot]
    trip = next(i for i, a in enumerate(tests) if tests[0] - a > 0.1)
    guarded = run(task, "so", mask, eta=eta, fisher_max_samples=16, guard_drop=0.1,
                  guard_rows=0, eta_ladder=n)
    assert (guarded.stopped_at, guarded.stop_reason) == (trip - 1, "guard")
    assert same_params(guarded.model, one_shot[trip - 2].model if trip > 1 else task.model)
    plain = run(task, "so", mask, eta=eta, fisher_max_samples=16)
    assert (plain.stopped_at, plain.stop_reason) == (1, "one-shot")


def test_prob_rule_on_a_causal_lm_with_batches():
    torch.manual_seed(0)
    model = make_model("llama", dtype=torch.float32)
    forget = [make_batch("causal_lm", bsz=4, seed=10)]
    retain = [make_batch("causal_lm", bsz=4, seed=50)]

    def prob(m):  # mean over rows of exp(mean answer-token log-probability)
        with torch.no_grad():
            b = forget[0]
            lp = torch.log_softmax(m(input_ids=b["input_ids"],
                                     attention_mask=b["attention_mask"]).logits[:, :-1].double(), -1)
            lab = b["labels"][:, 1:]
            keep = lab != -100
            tok = lp.gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            return float(((tok * keep).sum(1) / keep.sum(1)).exp().mean())

    series = [prob(model)]
    cfg = dict(lr=3e-3, epochs=40, max_steps=30)
    unlearn(model, "ga", "full", config=UnlearnConfig(**cfg), forget=forget, retain=retain,
            callbacks=[lambda s, m, r: series.append(prob(m))])
    target = series[0] * 0.5
    s = next(t for t, p in enumerate(series) if p <= target)
    assert 0 < s < 30
    res = unlearn(model, "ga", "full", config=UnlearnConfig(**cfg, stop_when=f"prob<={target}"),
                  forget=forget, retain=retain)
    assert (res.stopped_at, res.stop_reason) == (s, "criterion")
    with pytest.raises(ValueError, match="fits classification tasks, not causal_lm; rules for "
                                         "causal_lm: retrained, rouge<=X, prob<=X"):
        unlearn(model, "ga", "full", config=UnlearnConfig(stop_when="flipped"), forget=forget)
    with pytest.raises(ValueError, match="needs a Task"):
        unlearn(model, "ga", "full", config=UnlearnConfig(stop_when="rouge<=0.2"), forget=forget)
    with pytest.raises(ValueError, match="fits classification tasks, not causal_lm"):
        unlearn(model, "ga", "full", config=UnlearnConfig(guard_drop=0.1), forget=forget)


def test_bad_stop_settings_are_refused_with_the_accepted_forms():
    assert parse_stop_rule("forget-acc <= 0.1").target == 0.1
    assert parse_stop_rule("Flipped").name == "flipped"
    with pytest.raises(ValueError, match="accepted: never, flipped, retrained, forget-acc<=X, "
                                         "rouge<=X, prob<=X"):
        UnlearnConfig(stop_when="forgotten")
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        UnlearnConfig(stop_when="forget-acc<=5")
    with pytest.raises(ValueError, match="guard_drop=1.5"):
        UnlearnConfig(guard_drop=1.5)
    with pytest.raises(ValueError, match="stop_every=0"):
        UnlearnConfig(stop_every=0)


def test_run_folder_records_where_and_why_the_run_stopped(task, mask, tmp_path):
    res = run(task, "ga", mask, lr=1e-2, stop_when="flipped", max_steps=16)
    res.save(tmp_path / "run")
    folder = read_run(tmp_path / "run")
    assert folder["config"]["stopped_at"] == res.stopped_at > 0
    assert folder["config"]["stop_reason"] == folder["metrics"]["stop_reason"] == "criterion"
    assert folder["config"]["config"]["stop_when"] == "flipped"
    assert len(folder["metrics"]["stop"]["checks"]) == res.stopped_at + 1
    assert res.summary()["steps"] == res.stopped_at
    json.dumps(folder["metrics"])


def test_cli_flags_for_stop_and_guard():
    args = build_parser().parse_args(["unlearn", "--task", "x", "--method", "ga",
                                      "--stop-when", "forget-acc<=0.1", "--stop-every", "5",
                                      "--guard-drop", "0.03", "--guard-rows", "128"])
    assert dataclass_overrides(args) == {"stop_when": "forget-acc<=0.1", "stop_every": 5,
                                         "guard_drop": 0.03, "guard_rows": 128}


# ---------------------------------------------------------------------------------------------
# Peak memory (issue #12: it read 0 once an earlier step in the process had used more)


def test_peak_memory_counts_a_block_below_an_earlier_peak():
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB touched, then freed: the process peak is set
    del big
    meter = MemoryMeter(torch.device("cpu"))
    block = torch.ones(16 * 2**20 // 4)  # 16 MiB, well below the earlier peak
    peak, kind = meter.peak()
    del block
    assert kind == "cpu_rss_peak_delta"
    assert peak >= 15 * 2**20


def test_unlearn_peak_memory_is_never_zero_for_a_run_that_allocated():
    torch.manual_seed(0)
    model = make_model("bert", dtype=torch.float32)
    with torch.no_grad():  # make the model big enough to see: a 4 MiB embedding table
        model.bert.embeddings.word_embeddings.weight = torch.nn.Parameter(
            torch.randn(2**16, 16))
    big = torch.ones(64 * 2**20 // 4)
    del big
    batch = make_batch("classification", bsz=4)
    res = unlearn(model, "ga", "full", config=UnlearnConfig(max_steps=2, lr=1e-4),
                  forget=[batch], retain=[batch])
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert res.peak_memory_kind == "cpu_rss_peak_delta"
    # at least the working copy of the model and AdamW's two moments of every parameter
    assert res.peak_memory_bytes >= 2 * n_bytes


# ---------------------------------------------------------------------------------------------
# On the embedded world (slow: loads toy-sentiment-small, trained and cached on first use)


@pytest.mark.slow
def test_one_canary_flipped_with_stop_and_guard_on_the_toy_world():
    """One canary, MAPE-GA at the app's step size: with ``stop_when='flipped'`` the run stops
    at the first step where the canary's prediction leaves its training label (checked
    against the per-step loop), and the test accuracy it keeps is at least that of the run
    that takes every step; the guard on the full run keeps the last model within 2 points."""
    world = load_task("toy-sentiment-small", forget="canaries")
    one = world.forget.select([0])
    cfg = dict(lr=2e-3, epochs=20, batch_size=16, score_max_retain=256, lr_schedule="constant")
    series = [1.0]

    def cb(step, model, row):
        series.append(accuracy_of(model, world, one))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        every = unlearn(world, "ga", "mape", 0.9, UnlearnConfig(**cfg), forget=one,
                        callbacks=[cb])
        stopped = unlearn(world, "ga", "mape", 0.9, UnlearnConfig(**cfg, stop_when="flipped"),
                          forget=one)
    s = series.index(0.0)
    assert (stopped.stopped_at, stopped.stop_reason) == (s, "criterion") and s < 20
    test = lambda m: evaluate(world.replace(forget=None, retain=None), m)["test_acc"]  # noqa
    assert test(stopped.model) >= test(every.model)
    guarded = unlearn(world, "ga", "full", 0.0,
                      UnlearnConfig(lr=5e-3, epochs=40, batch_size=4, guard_drop=0.02,
                                    guard_rows=256))
    stop = guarded.meta["stop"]
    assert guarded.stop_reason == "guard"
    assert stop["checks"][-1]["guard_acc"] < stop["start_guard_acc"] - 0.02
    kept = next(c for c in stop["checks"] if c["step"] == guarded.stopped_at)
    assert kept["guard_acc"] >= stop["start_guard_acc"] - 0.02
    idx = sorted(random.Random(0).sample(range(len(world.test)), 256))
    assert accuracy_of(guarded.model, world, world.test.select(idx)) == kept["guard_acc"]
