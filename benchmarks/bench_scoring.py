"""Scoring benchmark (issues #2, #13): prints markdown tables and writes JSON.

Side by side in one run, on the same batches, with the same number of threads:
  (a) the MAPE mask-gradient pass vs a plain forward pass vs a training forward+backward;
      also the pass as it was before issue #13 (multiplying mask hooks), the pass on a batch
      right-padded to twice its length (trimmed per batch), and a loop of per-sample backwards;
  (b) warm start + greedy-swap refinement on random problems shaped like BERT-base
      (12 x 3072 filters, N=512) and Llama-2-7B (32 x 11008, N=256);
  (c) the same scoring work (K batches) in 1 process and in 2 processes under
      ``accelerate launch`` (gloo on CPU), 1 thread per process: wall-time speedup.

Each timing is the median of interleaved repeats (the passes alternate, so a load change
hits all of them); both wall time and this process's CPU time are recorded — with one
thread and a busy machine, the CPU-time ratios are the steadier ones.

    python benchmarks/bench_scoring.py            # BERT-base shape, B=32, seq 64, 1 thread
    python benchmarks/bench_scoring.py --quick    # small model, fewer repeats
    python benchmarks/bench_scoring.py --no-dist --no-loop   # (a) and (b) only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import transformers as T

from mape_viz.distributed import barrier, process_info
from mape_viz.gradients import accumulate_mask_grads, frozen, per_sample_mask_grads
from mape_viz.losses import per_sample_loss
from mape_viz.masking import apply_masks
from mape_viz.selection import select_modules
from mape_viz.sitemaps import get_sites
from mape_viz.types import ModuleScores, ModuleTerms

RESULTS = Path(__file__).parent / "results"
LAUNCH = ["launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns: dict, repeats: int) -> dict[str, dict[str, float]]:
    """``{name: {"wall": median s, "cpu": median s}}``, the passes alternating each round."""
    for fn in fns.values():
        fn()  # warm-up
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {k: {"wall": statistics.median(wall[k]), "cpu": statistics.median(cpu[k])} for k in fns}


def make_model(quick: bool) -> torch.nn.Module:
    if quick:
        cfg = T.BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=4,
                           num_attention_heads=4, intermediate_size=512, num_labels=2)
    else:  # BERT-base shape, random weights (no download)
        cfg = T.BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                           num_attention_heads=12, intermediate_size=3072, num_labels=2)
    torch.manual_seed(0)
    return T.BertForSequenceClassification(cfg).eval()


def make_batch(bsz: int, seq: int, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(5, vocab, (bsz, seq), generator=g),
            "attention_mask": torch.ones(bsz, seq, dtype=torch.long),
            "labels": torch.randint(0, 2, (bsz,), generator=g)}


def right_padded(batch: dict[str, torch.Tensor], extra: int) -> dict[str, torch.Tensor]:
    """``batch`` with ``extra`` all-padding columns appended."""
    b = batch["input_ids"].shape[0]
    return {"input_ids": torch.cat([batch["input_ids"], torch.zeros(b, extra, dtype=torch.long)], 1),
            "attention_mask": torch.cat([batch["attention_mask"], torch.zeros(b, extra, dtype=torch.long)], 1),
            "labels": batch["labels"]}


def multiplying_hooks_pass(model, batch) -> None:
    """The scoring pass before issue #13: all-ones masks multiplied in by ``apply_masks``
    (a multiplication per site forward and backward), no padding trimmed."""
    sites = get_sites(model)
    bsz = batch["input_ids"].shape[0]
    heads = torch.ones(bsz, *sites.shape("heads"), requires_grad=True)
    filters = torch.ones(bsz, *sites.shape("filters"), requires_grad=True)
    with apply_masks(model, heads, filters, sites=sites), torch.enable_grad():
        losses = per_sample_loss(model, batch)
        torch.autograd.grad(losses.sum(), (heads, filters))


def bench_passes(model, batch, repeats: int, loop: bool) -> dict[str, dict[str, float]]:
    padded = right_padded(batch, batch["input_ids"].shape[1])

    def forward():
        with torch.no_grad():
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    def train_step():
        model.zero_grad(set_to_none=True)
        per_sample_loss(model, batch).mean().backward()

    def scoring():
        with frozen(model):
            per_sample_mask_grads(model, batch)

    def scoring_before():
        with frozen(model):
            multiplying_hooks_pass(model, batch)

    def scoring_padded():
        with frozen(model):
            per_sample_mask_grads(model, padded)

    out = interleaved({"forward": forward, "train_fwd_bwd": train_step, "scoring_batched": scoring,
                       "scoring_multiplying_hooks": scoring_before,
                       "scoring_padded_2x": scoring_padded}, repeats)
    model.zero_grad(set_to_none=True)
    if loop:
        def per_sample_loop():
            with frozen(model):
                for b in range(batch["input_ids"].shape[0]):
                    per_sample_mask_grads(model, {k: v[b:b + 1] for k, v in batch.items()})
        out.update(interleaved({"per_sample_loop": per_sample_loop}, max(1, repeats // 2)))
    return out


def random_scores(L: int, H: int, F: int, N: int, seed: int = 0) -> ModuleScores:
    g = torch.Generator().manual_seed(seed)
    fac = {"heads": torch.randn(N, L, H, generator=g), "filters": torch.randn(N, L, F, generator=g)}
    grad = {k: torch.randn(v.shape[1:], generator=g) * 0.5 for k, v in fac.items()}
    fisher = {k: (v ** 2).mean(0) for k, v in fac.items()}
    return ModuleScores(heads=grad["heads"] + fisher["heads"] / 2, filters=grad["filters"] + fisher["filters"] / 2,
                        grad=ModuleTerms(**grad), fisher=ModuleTerms(**fisher), factor=ModuleTerms(**fac),
                        n_fisher=N, objective="mlr", family="synthetic")


def bench_refine(shapes, repeats):
    rows = []
    for name, (L, H, F, N) in shapes.items():
        scores = random_scores(L, H, F, N)
        warm = timeit(lambda: select_modules(scores, 0.9, refine=None), repeats)
        greedy = timeit(lambda: select_modules(scores, 0.9, refine="greedy"), repeats)
        mask = select_modules(scores, 0.9, refine="greedy")
        gain = {k: float((mask.cost_before[k] - mask.cost_after[k]).sum()) for k in ("heads", "filters")}
        rows.append({"problem": name, "L": L, "H": H, "F": F, "N": N, "warm_start_s": warm,
                     "greedy_s": greedy, "swaps": len(mask.swaps), "cost_gain": gain})
    return rows


def dist_worker(out: str, quick: bool, n_batches: int, bsz: int, seq: int) -> None:
    """One process of (c): the scoring pass over ``n_batches`` batches (sharded when launched
    with several processes), 1 thread; rank 0 writes the pass's wall and CPU seconds."""
    torch.set_num_threads(1)
    info = process_info()
    model = make_model(quick)
    data = [make_batch(bsz, seq, model.config.vocab_size, seed=i) for i in range(n_batches)]
    accumulate_mask_grads(model, data[:info.world], max_factor=0)  # warm-up
    barrier(info)
    c0, t0 = time.process_time(), time.perf_counter()
    stats = accumulate_mask_grads(model, data, max_factor=64)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if info.is_main:
        Path(out).write_text(json.dumps({"world": info.world, "wall": wall, "cpu_rank0": cpu,
                                         "samples": stats.count, "batches": n_batches}))


def bench_dist(args, n_batches: int, bsz: int, seq: int) -> dict:
    """(c): the same work in a fresh 1-process run and a 2-process ``accelerate launch``."""
    accelerate = shutil.which("accelerate")
    if accelerate is None:
        return {"skipped": "the accelerate CLI is not on PATH"}
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true", CUDA_VISIBLE_DEVICES="",
               HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    work = ["--worker-batches", str(n_batches), "--batch", str(bsz), "--seq", str(seq)]
    if args.quick:
        work.append("--quick")
    out = {}
    for name, prefix in (("1_process", [sys.executable]), ("2_processes", [accelerate, *LAUNCH])):
        path = RESULTS / f".bench_scoring_{name}.json"
        t0 = time.perf_counter()
        proc = subprocess.run([*prefix, str(Path(__file__).resolve()), "--worker", str(path), *work],
                              env=env, cwd=root, capture_output=True, text=True)
        total = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{name} run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        out[name] = json.loads(path.read_text()) | {"end_to_end_wall": total}
        path.unlink()
    out["speedup_pass_wall"] = out["1_process"]["wall"] / out["2_processes"]["wall"]
    out["speedup_end_to_end"] = out["1_process"]["end_to_end_wall"] / out["2_processes"]["end_to_end_wall"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small model and fewer repeats")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=None, help="default 5 (3 with --quick)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for (a) and (b)")
    ap.add_argument("--no-loop", action="store_true", help="skip the per-sample loop")
    ap.add_argument("--no-dist", action="store_true", help="skip (c), the 2-process run")
    ap.add_argument("--dist-batches", type=int, default=None,
                    help="(c): batches of 8 sequences (default 8; 24 with --quick)")
    ap.add_argument("--out", default=str(RESULTS / "bench_scoring.json"))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-batches", type=int, default=8, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        dist_worker(args.worker, args.quick, args.worker_batches, args.batch, args.seq)
        return
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    load_before = os.getloadavg()
    torch.manual_seed(0)
    model = make_model(args.quick)
    sites = get_sites(model)
    batch = make_batch(args.batch, args.seq, model.config.vocab_size)
    passes = bench_passes(model, batch, repeats, loop=not args.no_loop)
    shapes = {"BERT-base (12x12 heads, 12x3072 filters, N=512)": (12, 12, 3072, 512),
              "Llama-2-7B (32x32 heads, 32x11008 filters, N=256)": (32, 32, 11008, 256)}
    if args.quick:
        shapes = {"BERT-base (12x12 heads, 12x3072 filters, N=512)": (12, 12, 3072, 512)}
    refine = bench_refine(shapes, max(1, repeats // 2))
    dist = None
    if not args.no_dist:
        dist = bench_dist(args, args.dist_batches or (24 if args.quick else 8), 8, args.seq)
    train = passes["train_fwd_bwd"]
    result = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "torch": torch.__version__,
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "model": {"layers": sites.n_layers, "heads": sites.n_heads, "filters": sites.n_filters,
                  "hidden": model.config.hidden_size, "batch": args.batch, "seq": args.seq,
                  "repeats": repeats},
        "passes_s": passes,
        "ratios": {f"{k}_vs_train_step": {c: v[c] / train[c] for c in ("wall", "cpu")}
                   for k, v in passes.items()},
        "refine": refine,
        "distributed": dist,
    }
    m = result["model"]
    print(f"\nModel: BERT-shaped, {m['layers']} layers x {m['heads']} heads x {m['filters']} filters, "
          f"hidden {m['hidden']}, batch {m['batch']} x seq {m['seq']}, {torch.get_num_threads()} "
          f"thread(s), median of {repeats} interleaved repeats; load average "
          f"{load_before[0]:.1f} before, {result['machine']['loadavg_after'][0]:.1f} after on "
          f"{os.cpu_count()} CPUs\n")
    print("| pass (one batch) | wall s | CPU s | × train (wall) | × train (CPU) |")
    print("|---|---:|---:|---:|---:|")
    labels = {"forward": "plain forward", "train_fwd_bwd": "training forward+backward",
              "scoring_batched": "MAPE scoring pass (taps, no weight grads)",
              "scoring_multiplying_hooks": "scoring as before #13 (multiplying hooks)",
              "scoring_padded_2x": "scoring, batch right-padded to 2T (trimmed)",
              "per_sample_loop": f"per-sample loop ({args.batch} backwards)"}
    for k, label in labels.items():
        if k in passes:
            v = passes[k]
            print(f"| {label} | {v['wall']:.3f} | {v['cpu']:.3f} | {v['wall'] / train['wall']:.2f} | "
                  f"{v['cpu'] / train['cpu']:.2f} |")
    print("\n| refinement problem (90 % sparsity) | warm start s | warm + greedy s | swaps |")
    print("|---|---:|---:|---:|")
    for r in refine:
        print(f"| {r['problem']} | {r['warm_start_s']:.3f} | {r['greedy_s']:.3f} | {r['swaps']} |")
    if dist and "skipped" not in dist:
        one, two = dist["1_process"], dist["2_processes"]
        print(f"\n(c) the same scoring work, {one['batches']} batches x 8 x seq {args.seq} "
              f"({one['samples']} samples), 1 thread per process\n")
        print("| run | scoring pass wall s | end to end wall s (incl. start-up) |")
        print("|---|---:|---:|")
        print(f"| 1 process | {one['wall']:.2f} | {one['end_to_end_wall']:.1f} |")
        print(f"| 2 processes (accelerate launch, gloo) | {two['wall']:.2f} | {two['end_to_end_wall']:.1f} |")
        print(f"| speedup | {dist['speedup_pass_wall']:.2f}x | {dist['speedup_end_to_end']:.2f}x |")
    elif dist:
        print(f"\n(c) skipped: {dist['skipped']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
