"""Scale: sharded scoring and masked unlearning (GA, GD, NPO, SO) under ``accelerate launch``,
the scoring pass's floor (no weight gradient, padding trimmed), autocast, and the GPU check's
tiny CPU configuration (docs/design.md §2, §10)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import FAMILIES, make_batch, make_model
from dist_worker import WORKER_FAMILIES, OneShot, batches
from dist_worker import run as run_worker
from dist_unlearn_worker import FISHER_CAP, FORGET_SIZES, UNLEARN_FAMILIES, runs_for
from dist_unlearn_worker import run as run_unlearn_worker
from test_byod import _glue_folder  # a GLUE-style folder and a tiny classifier, on disk
from mape_viz.cli import main as cli_main
from mape_viz.cli import score as score_cli
from mape_viz.distributed import (ProcessInfo, process_info, row_shards, shard, shard_step,
                                  slice_rows)
from mape_viz.gradients import (_SCORING_AUTOCAST, accumulate_mask_grads, autocast_dtype,
                                frozen, per_sample_mask_grads, scoring_autocast, trim_padding)
from mape_viz.losses import per_sample_loss
from mape_viz.mask_io import load_mask
from mape_viz.masking import apply_masks
from mape_viz.sitemaps import get_sites
from mape_viz.unlearning import UnlearnConfig, make_mask, resolve_data
from mape_viz.unlearning import engine
from mape_viz.unlearning.result import read_run

ROOT = Path(__file__).resolve().parents[1]
#: Two processes over gloo on CPU. ``accelerate launch --cpu --num_processes 2`` starts *one*
#: process unless MPI is installed (accelerate 1.16's CPU launcher is mpirun); the torchrun
#: launcher (``--multi_gpu``) starts both, and ACCELERATE_USE_CPU + no visible GPU make
#: ``mape_viz.distributed`` pick gloo.
LAUNCH = ["launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               ACCELERATE_USE_CPU="true", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# ---------------------------------------------------------------------------------------------
# Two processes vs one


@pytest.fixture(scope="module")
def two_and_one(tmp_path_factory):
    accelerate = shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("the accelerate CLI is not on PATH")
    two = tmp_path_factory.mktemp("two")
    one = tmp_path_factory.mktemp("one")
    proc = subprocess.run([accelerate, *LAUNCH, str(ROOT / "tests" / "dist_worker.py"), str(two)],
                          env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    threads = torch.get_num_threads()
    try:
        run_worker(one)
    finally:
        torch.set_num_threads(threads)
    return two, one


@pytest.mark.slow
def test_two_processes_shard_the_batches(two_and_one):
    two, _ = two_and_one
    r0, r1 = (torch.load(two / f"rank{r}.pt") for r in (0, 1))
    assert (r0["world"], r1["world"]) == (2, 2)
    for fam in WORKER_FAMILIES:  # 7 retain batches: rank 0 took 0, 2, 4, 6 and rank 1 the rest
        assert r0[f"{fam}/own_batches"] == [0, 2, 4, 6]
        assert r1[f"{fam}/own_batches"] == [1, 3, 5]
    assert json.loads((two / "main.json").read_text()) == {"world": 2, "written_by": 0}


@pytest.mark.slow
@pytest.mark.parametrize("fam", WORKER_FAMILIES)
@pytest.mark.parametrize("objective", ["mlr", "mlf"])
def test_two_processes_give_one_process_scores_and_masks(two_and_one, fam, objective):
    two, one = two_and_one
    single = torch.load(one / "rank0.pt")[f"{fam}/{objective}"]
    assert torch.load(one / "rank0.pt")["world"] == 1
    ranks = [torch.load(two / f"rank{r}.pt")[f"{fam}/{objective}"] for r in (0, 1)]
    for key, ref in single.items():
        for res in ranks:
            got = res[key]
            if key.startswith("mask"):
                assert torch.equal(got, ref), key
            elif not isinstance(ref, torch.Tensor):
                assert got == pytest.approx(ref, rel=1e-12), key
            else:  # within 1e-6 of the largest value of its kind (sums differ in order only)
                scale = float(ref.abs().max()) or 1.0
                torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6 * scale, msg=key)
    # every rank holds the same scores, bit for bit (an all-reduce, not two estimates)
    for key in single:
        a, b = ranks[0][key], ranks[1][key]
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    # the factor is the first MAX_FACTOR Fisher-set samples, gathered across the ranks
    assert single["factor_heads"].shape[0] == 7


def _cli_one_and_two(tmp_path: Path, monkeypatch, argv: list[str], name: str):
    """Run ``mape-viz ARGV`` in this process (cache 1) and under a 2-process launch (cache 2),
    each into its own ``--out``; check the launch exited 0, left one folder and the same files.
    Returns (one-process folder, two-process folder, the launch's CompletedProcess)."""
    accelerate = shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("the accelerate CLI is not on PATH")
    monkeypatch.setenv("MAPE_VIZ_CACHE", str(tmp_path / "cache1"))
    one, two = tmp_path / "one" / name, tmp_path / "two" / name
    assert cli_main(argv + ["--out", str(one), "--device", "cpu"]) == 0
    env = dict(_env(), MAPE_VIZ_CACHE=str(tmp_path / "cache2"))
    proc = subprocess.run([accelerate, *LAUNCH, "-m", "mape_viz.cli", *argv, "--out", str(two)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p.name for p in two.parent.iterdir()] == [name]  # one folder, no rank's leftovers
    names = sorted(str(p.relative_to(one)) for p in one.rglob("*"))
    assert sorted(str(p.relative_to(two)) for p in two.rglob("*")) == names
    return one, two, proc


@pytest.mark.slow
def test_cli_score_under_two_processes_writes_the_one_process_folder(tmp_path, monkeypatch):
    data, model = _glue_folder(tmp_path)
    argv = ["score", "--model", model, "--data", data, "--forget", "ids:0,1,2",
            "--sparsity", "0.5", "--quiet"]
    one, two, proc = _cli_one_and_two(tmp_path, monkeypatch, argv, "s")
    assert proc.stderr.count("scored ") == 1  # only rank 0 reports and writes
    ref, got = load_file(one / "scores.safetensors"), load_file(two / "scores.safetensors")
    for key, t in ref.items():
        torch.testing.assert_close(got[key], t, rtol=1e-6, atol=1e-6 * float(t.abs().max()), msg=key)
    m1, m2 = load_mask(one / "mask"), load_mask(two / "mask")
    assert torch.equal(m1.heads, m2.heads) and torch.equal(m1.filters, m2.filters)
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert {k: v for k, v in s1.items() if k != "seconds"} == \
        {k: v for k, v in s2.items() if k != "seconds"}


@pytest.mark.slow
def test_cli_unlearn_under_two_processes_writes_one_run_folder(tmp_path, monkeypatch):
    """``mape-viz unlearn`` under a launcher: rank 0 alone evaluates and writes the folder, the
    same files as one process, the same mask and (float32 summation order aside) weights."""
    data, model = _glue_folder(tmp_path)
    argv = ["unlearn", "--model", model, "--data", data, "--forget", "ids:0,1,2,3",
            "--method", "ga", "--selector", "mape", "--sparsity", "0.5", "--max-steps", "3",
            "--stop-when", "never", "--lr", "1e-3", "--quiet"]
    one, two, proc = _cli_one_and_two(tmp_path, monkeypatch, argv, "r")
    assert proc.stdout.count('"out"') == 1  # only rank 0 reports
    r1, r2 = read_run(one), read_run(two)
    k1, k2 = r1["mask"], r2["mask"]
    assert torch.equal(k1.heads, k2.heads) and torch.equal(k1.filters, k2.filters)
    w1, w2 = load_file(one / "weights.safetensors"), load_file(two / "weights.safetensors")
    assert w1.keys() == w2.keys()
    for key, t in w1.items():
        torch.testing.assert_close(w2[key], t, rtol=1e-4, atol=1e-4, msg=key)
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert m1["original"] == m2["original"]  # the same task, evaluated once, on rank 0
    assert set(m2) >= {"original", "unlearned"}


# ---------------------------------------------------------------------------------------------
# Masked unlearning: two processes vs one (tests/dist_unlearn_worker.py)

#: float64 tiny models: two processes' weights are within this of one process's (measured:
#: at most 4.9e-13 after 6 AdamW steps); every run moves some weight by far more (>= 1e-3).
UNLEARN_ATOL, UNLEARN_RTOL, MOVED = 1e-9, 1e-7, 1e-3


def _launch(worker: str, out: Path) -> None:
    accelerate = shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("the accelerate CLI is not on PATH")
    proc = subprocess.run([accelerate, *LAUNCH, str(ROOT / "tests" / worker), str(out)],
                          env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def unlearn_two_and_one(tmp_path_factory):
    two = tmp_path_factory.mktemp("unlearn_two")
    one = tmp_path_factory.mktemp("unlearn_one")
    _launch("dist_unlearn_worker.py", two)
    threads = torch.get_num_threads()
    try:
        run_unlearn_worker(one)
    finally:
        torch.set_num_threads(threads)
    return [torch.load(two / f"rank{r}.pt") for r in (0, 1)], torch.load(one / "rank0.pt"), two, one


def _runs(fam: str) -> list[str]:
    return list(runs_for(fam))


@pytest.mark.slow
@pytest.mark.parametrize("fam", UNLEARN_FAMILIES)
def test_two_processes_unlearn_like_one(unlearn_two_and_one, fam):
    (r0, r1), single, _, _ = unlearn_two_and_one
    assert (r0["world"], r1["world"], single["world"]) == (2, 2, 1)
    base = make_model(fam).state_dict()
    for name in _runs(fam):
        ref, got, other = single[f"{fam}/{name}"], r0[f"{fam}/{name}"], r1[f"{fam}/{name}"]
        assert ref["ok"] and got["ok"] and other["ok"], name
        # the same mask (sharded scoring), the same number of steps and reason to stop
        for key in ("mask_heads", "mask_filters"):
            assert (got[key] is None and ref[key] is None) or torch.equal(got[key], ref[key]), name
        assert (got["stopped_at"], got["stop_reason"]) == (ref["stopped_at"], ref["stop_reason"])
        assert (other["stopped_at"], other["stop_reason"]) == (ref["stopped_at"], ref["stop_reason"])
        # the history's loss terms are the global batch's
        assert len(got["history"]) == len(ref["history"]), name
        for a, b in zip(got["history"], ref["history"]):
            for k in ("loss", "forget_loss", "retain_loss", "npo_loss", "dpo_loss", "l1",
                      "grad_norm"):
                if k in b:
                    assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-12), (name, k)
        moved = 0.0
        for key, t in ref["state"].items():
            # both ranks hold the same model, bit for bit
            assert torch.equal(got["state"][key], other["state"][key]), (name, key)
            torch.testing.assert_close(got["state"][key], t, rtol=UNLEARN_RTOL,
                                       atol=UNLEARN_ATOL, msg=f"{name} {key}")
            moved = max(moved, float((t - base[key]).abs().max()))
            # frozen entries: outside the trained slices, exactly the original
            if ref["mask_heads"] is None:
                continue  # a full run: nothing is frozen
            change = got["changes"].get(key)
            frozen = torch.ones_like(t, dtype=torch.bool)
            if change is not None:
                frozen.index_fill_(change["dim"], change["index"], False)
            assert torch.equal(got["state"][key][frozen], base[key][frozen]), (name, key)
        assert moved >= MOVED, f"{name}: the run barely changed the model ({moved:.2g})"
    if "ga-stop" in _runs(fam):  # the rule held after 2 of 9 steps, on both ranks
        assert r0[f"{fam}/ga-stop"]["stop_reason"] == "criterion"
        assert r0[f"{fam}/ga-stop"]["stopped_at"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("fam", UNLEARN_FAMILIES)
def test_two_processes_sum_so_gradients_and_fisher_like_one(unlearn_two_and_one, fam):
    (r0, r1), single, _, _ = unlearn_two_and_one
    ref = single[f"{fam}/sums"]
    assert (r0[f"{fam}/sums"]["n_forget"], r0[f"{fam}/sums"]["n_retain"]) == \
        (sum(FORGET_SIZES), FISHER_CAP) == (ref["n_forget"], ref["n_retain"])
    for key in ("grad", "fisher", "fisher_vmap"):  # both Fisher engines
        for a, b, t in zip(r0[f"{fam}/sums"][key], r1[f"{fam}/sums"][key], ref[key]):
            assert torch.equal(a, b)
            torch.testing.assert_close(a, t, rtol=1e-9, atol=1e-12 * float(t.abs().max()))


@pytest.mark.slow
def test_two_processes_write_one_run_folder_each(unlearn_two_and_one):
    _, _, two, one = unlearn_two_and_one
    names = sorted(p.name for p in (one / "runs").iterdir())
    assert sorted(p.name for p in (two / "runs").iterdir()) == names  # no temporary leftovers
    assert len(names) == sum(len(_runs(f)) for f in UNLEARN_FAMILIES)
    for name in names:
        a, b = read_run(two / "runs" / name), read_run(one / "runs" / name)
        assert a["config"] == b["config"]
        assert a["metrics"]["stopped_at"] == b["metrics"]["stopped_at"]
        w2, w1 = (load_file(d / "runs" / name / "weights.safetensors") for d in (two, one))
        assert sorted(w2) == sorted(w1)
        for key, t in w1.items():
            torch.testing.assert_close(w2[key], t, rtol=UNLEARN_RTOL, atol=UNLEARN_ATOL)


# ---------------------------------------------------------------------------------------------
# Sharding without processes


def test_shard_takes_every_nth_batch_of_lists_and_iterables():
    items = [f"b{i}" for i in range(8)]
    info = ProcessInfo(rank=1, world=3, device=torch.device("cpu"))
    expected = [(1, "b1"), (4, "b4"), (7, "b7")]
    assert list(shard(items, info)) == expected
    assert list(shard(OneShot(items), info)) == expected
    assert list(shard(items, ProcessInfo(0, 1, torch.device("cpu")))) == list(enumerate(items))


def test_row_shards_give_every_rank_the_same_fraction_of_each_set():
    for sizes in ([3, 4], [4, 2], [1, 5], [8], [3], [10, 10], [6, 9, 12]):
        for world in (1, 2, 3, 4):
            parts = row_shards(sizes, world)
            assert sum(p.weight for p in parts) == pytest.approx(1.0)
            for i, n in enumerate(sizes):  # the spans tile each set in order
                spans = [p.spans[i] for p in parts]
                assert spans[0][0] == 0 and spans[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
                for p, (a, b) in zip(parts, spans):
                    assert (b - a) == pytest.approx(p.weight * n)
    assert [p.weight for p in row_shards([3, 4], 2)] == [1.0, 0.0]  # gcd 1: rank 0 alone
    assert [p.spans for p in row_shards([4, 2], 2)] == [((0, 2), (0, 1)), ((2, 4), (1, 2))]
    with pytest.raises(ValueError, match="sizes >= 1"):
        row_shards([0, 3], 2)


def test_shard_step_cuts_rows_and_keeps_shared_values():
    f = make_batch("classification", bsz=4)
    f["note"] = "kept"
    r = make_batch("classification", bsz=2, seed=5)
    (fs, rs), w = shard_step([f, r], ProcessInfo(1, 2, torch.device("cpu")))
    assert w == 0.5 and fs["note"] == "kept"
    assert torch.equal(fs["input_ids"], f["input_ids"][2:])
    assert torch.equal(rs["labels"], r["labels"][1:])
    (fs, rs), w = shard_step([make_batch("classification", bsz=3), r],
                             ProcessInfo(1, 2, torch.device("cpu")))
    assert (fs, rs, w) == (None, None, 0.0)  # gcd(3, 2) = 1: rank 0 takes the step
    (fs, none), w = shard_step([f, None], ProcessInfo(0, 1, torch.device("cpu")))
    assert none is None and w == 1.0 and fs["input_ids"] is f["input_ids"]
    assert slice_rows(f, 1, 3)["attention_mask"].shape == (2, f["input_ids"].shape[1])


def test_score_autocast_is_a_config_field_used_by_make_mask(monkeypatch):
    assert UnlearnConfig().score_autocast == "off"
    with pytest.raises(ValueError, match="score_autocast='int8'"):
        UnlearnConfig(score_autocast="int8")
    seen = []

    def spy(*args, **kwargs):  # the autocast in force while make_mask scores
        seen.append(_SCORING_AUTOCAST.get())
        raise RuntimeError("stop here")

    monkeypatch.setattr(engine, "score_modules", spy)
    model = make_model("bert")
    b = make_batch("classification", bsz=2)
    data, _ = resolve_data(model, "ga", UnlearnConfig(), forget=[b], retain=[b])
    with pytest.raises(RuntimeError, match="stop here"):
        make_mask(model, data, "mlf", "mape", 0.5, UnlearnConfig(score_autocast="bf16"))
    assert seen == [torch.bfloat16]


def test_score_autocast_is_a_cli_flag(capsys):
    with pytest.raises(SystemExit):
        cli_main(["unlearn", "--help"])
    assert "--score-autocast {off,bf16,fp16}" in capsys.readouterr().out


def test_score_cli_passes_score_autocast_to_the_scoring(tmp_path, monkeypatch):
    seen = []

    def spy(model, data, objective, selector, sparsity, cfg, *args, **kwargs):
        seen.append(cfg.score_autocast)
        raise RuntimeError("stop here")

    monkeypatch.setattr(score_cli, "make_mask", spy)
    monkeypatch.setenv("MAPE_VIZ_CACHE", str(tmp_path / "cache"))
    data, model = _glue_folder(tmp_path)
    with pytest.raises(RuntimeError, match="stop here"):
        cli_main(["score", "--model", model, "--data", data, "--forget", "ids:0,1",
                  "--score-autocast", "bf16", "--out", str(tmp_path / "s"), "--quiet"])
    assert seen == ["bf16"]
    with pytest.raises(SystemExit):  # argparse refuses a precision the config does not know
        cli_main(["score", "--task", "toy-sentiment", "--score-autocast", "int8",
                  "--out", str(tmp_path / "t")])


def test_one_process_is_not_distributed():
    info = process_info()
    assert (info.rank, info.world, info.is_main) == (0, 1, True)
    assert not torch.distributed.is_initialized()


def test_factor_rows_are_the_first_samples_in_batch_order():
    model = make_model("bert")
    data = batches("classification", 4, 7)  # sizes 2, 3, 4, 2
    st = accumulate_mask_grads(model, data, max_factor=4)
    with frozen(model):
        rows = torch.cat([per_sample_mask_grads(model, b)[0] for b in data[:2]])[:4]
    torch.testing.assert_close(st.factor_tensor("heads"), rows.float())
    assert st.batches == [(0, 2), (1, 3), (2, 4), (3, 2)] and st.reduced
    before = st.grad_sum["heads"].clone()
    st.all_reduce_()  # a second call (scores.py calls it again) is a no-op
    assert torch.equal(st.grad_sum["heads"], before)


# ---------------------------------------------------------------------------------------------
# The scoring pass's floor


@pytest.mark.parametrize("fam", ["bert", "gpt2", "llama"])
def test_trimmed_padding_gives_the_same_gradients(fam):
    model = make_model(fam)
    kind = FAMILIES[fam][2]
    padded = batches(kind, 2, 11)[1]  # 3 extra all-padding columns
    trimmed = trim_padding(padded)
    assert trimmed["input_ids"].shape[1] == padded["input_ids"].shape[1] - 3
    with frozen(model):
        gh, gf, loss = per_sample_mask_grads(model, padded)
        ref = _grads_with_apply_masks(model, padded)
    torch.testing.assert_close(gh, ref[0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gf, ref[1], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(loss, ref[2], rtol=1e-12, atol=1e-12)


def _grads_with_apply_masks(model, batch):
    """Reference: the plain multiplying mask hooks on the untrimmed batch."""
    sites = get_sites(model)
    b = batch["input_ids"].shape[0]
    mh = torch.ones(b, *sites.shape("heads"), dtype=torch.float64, requires_grad=True)
    mf = torch.ones(b, *sites.shape("filters"), dtype=torch.float64, requires_grad=True)
    with apply_masks(model, mh, mf), torch.enable_grad():
        losses = per_sample_loss(model, batch)
        gh, gf = torch.autograd.grad(losses.sum(), (mh, mf))
    return gh, gf, losses.detach()


def test_trim_padding_leaves_left_padding_and_qa_alone():
    b = make_batch("causal_lm", bsz=3, seq=8, pad_last=False)
    b["attention_mask"][:, :2] = 0  # left padding: leading columns unused
    assert trim_padding(b) is b
    qa = make_batch("extractive_qa", bsz=3, seq=8)
    qa["attention_mask"][:, -2:] = 0
    assert trim_padding(qa) is qa
    lm = make_batch("causal_lm", bsz=2, seq=8, pad_last=False)
    lm["attention_mask"][:, -2:] = 0
    lm["labels"][0, -1] = 5  # a labelled column is kept even where attention is off
    assert trim_padding(lm)["labels"].shape[1] == 8


class _MatmulShapes(TorchDispatchMode):
    """Records the output shape of every matrix product."""

    OPS = ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear")

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.__name__.split(".")[0] in self.OPS and isinstance(out, torch.Tensor):
            self.shapes.append(tuple(out.shape))
        return out


@pytest.mark.parametrize("fam", ["bert", "gpt2", "llama"])
def test_no_weight_gradient_is_ever_formed_while_scoring(fam):
    model = make_model(fam)
    batch = make_batch(FAMILIES[fam][2], bsz=5, seq=9)  # B·T = 45: no weight has a side of 45
    weight_shapes = {tuple(p.shape) for p in model.parameters() if p.dim() == 2}
    weight_shapes |= {s[::-1] for s in weight_shapes}
    seen_flags = []
    handle = model.register_forward_pre_hook(
        lambda m, a: seen_flags.append(any(p.requires_grad for p in m.parameters())))
    try:
        with _MatmulShapes() as scoring:
            accumulate_mask_grads(model, [batch], max_factor=0)
        with _MatmulShapes() as training:
            per_sample_loss(model, batch).sum().backward()
    finally:
        handle.remove()
    assert seen_flags[0] is False  # every weight frozen during the scoring pass
    assert not weight_shapes & set(scoring.shapes), "a weight-shaped matmul ran while scoring"
    assert weight_shapes & set(training.shapes)  # the detector does see weight gradients
    model.zero_grad(set_to_none=True)
    accumulate_mask_grads(model, [batch], max_factor=0)
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Autocast (the GPU path, exercised in its CPU configuration)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("fam", ["bert", "llama"])
def test_autocast_scoring_is_float32_and_close_to_fp32(fam, precision):
    model = make_model(fam, dtype=torch.float32)
    batch = make_batch(FAMILIES[fam][2], bsz=4)
    with frozen(model):
        ref_h, ref_f, _ = per_sample_mask_grads(model, batch)
        gh, gf, _ = per_sample_mask_grads(model, batch, autocast=precision)
        with scoring_autocast(precision):
            ctx_h, _, _ = per_sample_mask_grads(model, batch)
    assert gh.dtype == gf.dtype == torch.float32
    assert torch.equal(ctx_h, gh)
    assert not torch.equal(gh, ref_h)  # autocast really ran in half precision
    for got, ref in ((gh, ref_h), (gf, ref_f)):
        err = (got - ref).norm() / ref.norm()
        assert err < 0.05, f"{precision}: relative error {float(err):.3g}"
    st = accumulate_mask_grads(model, [batch], max_factor=2, autocast=precision)
    assert st.grad_sum["heads"].dtype == torch.float64 and st.factor_tensor("heads").dtype == torch.float32


def test_bad_autocast_is_refused():
    assert autocast_dtype("off") is None and autocast_dtype(torch.bfloat16) is torch.bfloat16
    with pytest.raises(ValueError, match="bf16"):
        autocast_dtype("int8")


# ---------------------------------------------------------------------------------------------
# benchmarks/gpu_check.py, tiny CPU configuration


def _load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_tiny_runs_on_cpu(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    threads = torch.get_num_threads()
    try:
        report = _load_gpu_check().main(["--tiny", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    res = json.loads(out.read_text())
    assert res == json.loads(json.dumps(report))
    assert res["config"]["tiny"] is True and res["device"] == "cpu" and res["ga_ok"]
    for key in ("train_step", "scoring_pass", "mape_ga_step"):
        assert res["seconds"][key] > 0
    cfg = res["config"]
    assert res["per_sample_mask_grad_bytes"] == cfg["batch"] * cfg["layers"] * (cfg["heads"] + cfg["filters"]) * 4
    assert 0 < res["mask"]["selected_heads"] < cfg["layers"] * cfg["heads"]
    assert "| train step" in capsys.readouterr().out
