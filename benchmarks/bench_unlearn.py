"""Benchmark module-aware unlearning against full unlearning on a BERT-base-sized model.

Side by side, in one run, on a randomly initialised ``BertForSequenceClassification`` built
from ``BertConfig()`` (BERT-base: 12 layers, 12 heads, d=768, 3072 filters, 110 M parameters;
``--quick``: 4 layers, d=256, 4 heads, 1024 filters):

* **SO Fisher** — the retain-set diagonal Fisher of Eq. 11 (``unlearning.fisher_sum``; full SO
  takes per-sample gradients with ``vmap(grad)``, MAPE-SO with hooks on the selected slices, as
  ``fisher_engine="auto"`` picks): full SO (every parameter) vs MAPE-SO at 90 % sparsity (only
  the selected heads' and filters' slices). Time and peak memory of the Fisher pass alone.
* **GA step** — ``unlearn(..., "ga")`` full vs MAPE-GA at 90 %: mean time of an optimizer step
  (forward, backward, AdamW, write-back; the first step is a warm-up and not counted) and the
  bytes of AdamW's state (exp_avg + exp_avg_sq + step counters).

The MAPE masks come from real MAPE scores (``score_modules`` + greedy refinement) on the same
random data; mask-making time is reported separately and is not part of the Fisher/step times.

Every measurement runs in a fresh subprocess so that memory numbers do not see each other:
on CUDA, ``torch.cuda.max_memory_allocated`` of the measured block minus what was allocated
before it; on CPU, the peak of the resident set size (sampled every 2 ms from
``/proc/self/statm``, after ``malloc_trim``) minus the RSS before the block.

    python benchmarks/bench_unlearn.py             # BERT-base size
    python benchmarks/bench_unlearn.py --quick     # small model, seconds
    python benchmarks/bench_unlearn.py --device cuda

Prints a markdown table; writes ``benchmarks/results/bench_unlearn.json``
(``bench_unlearn_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SPARSITY = 0.9
TARGETS = {"fisher_time": 0.3, "fisher_memory": 0.15, "optimizer_state": 0.2}


# ---------------------------------------------------------------------------------------------
# worker side


class PeakMemory:
    """Peak memory of a block: CUDA max allocated, or sampled RSS on CPU (bytes above start)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.002)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            try:
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            except OSError:
                pass
            self.start = self.peak = self.rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.rss())
        self.bytes = self.peak - self.start


def build(spec: dict[str, Any]):
    import transformers as T

    torch.manual_seed(0)
    if spec["quick"]:
        cfg = T.BertConfig(vocab_size=8000, hidden_size=256, num_hidden_layers=4,
                           num_attention_heads=4, intermediate_size=1024, num_labels=2)
    else:
        cfg = T.BertConfig(num_labels=2)  # BERT-base defaults
    dev = torch.device(spec["device"])
    model = T.BertForSequenceClassification(cfg).to(dev).eval()
    g = torch.Generator().manual_seed(1)

    def batches(n: int, bs: int, seed: int) -> list[dict[str, torch.Tensor]]:
        g.manual_seed(seed)
        out = []
        for s in range(0, n, bs):
            b = min(bs, n - s)
            ids = torch.randint(1000, cfg.vocab_size, (b, spec["seq"]), generator=g)
            am = torch.ones_like(ids)
            am[1::2, -spec["seq"] // 4:] = 0  # some right padding
            out.append({"input_ids": ids, "attention_mask": am,
                        "labels": torch.randint(0, 2, (b,), generator=g)})
        return out

    forget = batches(spec["n_forget"], spec["batch_size"], 2)
    retain = batches(spec["n_retain"], spec["batch_size"], 3)
    return model, forget, retain, dev


def mape_mask(model, forget, retain, objective: str):
    from mape_viz.scores import score_modules
    from mape_viz.selection import select_modules

    t0 = time.perf_counter()
    scores = score_modules(model, forget, retain, objective=objective, selector="mape")
    mask = select_modules(scores, sparsity=SPARSITY, refine="greedy")
    return mask, time.perf_counter() - t0


def worker_fisher(spec: dict[str, Any]) -> dict[str, Any]:
    from mape_viz.unlearning import SparseParams, fisher_sum

    model, forget, retain, dev = build(spec)
    mask, mask_s = (mape_mask(model, forget, retain, "mlr") if spec["selector"] == "mape"
                    else (None, 0.0))
    sp = SparseParams(model, mask)
    n_params = sp.n_trainable()
    # warm-up on one chunk (vmap / kernel set-up), not timed
    fisher_sum(model, sp, [{k: v[:1] for k, v in retain[0].items()}], "classification", chunk=1)
    # timed pass (no memory sampler running), then a second pass for the peak memory
    t0, c0 = time.perf_counter(), time.process_time()
    sums, n = fisher_sum(model, sp, retain, "classification", chunk=spec["chunk"])
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    del sums
    with PeakMemory(dev) as mem:
        sums, _ = fisher_sum(model, sp, retain, "classification", chunk=spec["chunk"])
        del sums
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_bytes": mem.bytes, "n_samples": n,
            "engine": "vmap" if sp.whole else "hooks",
            "n_params": n_params, "mask_seconds": mask_s,
            "n_selected": mask.n_selected() if mask is not None else None}


def worker_ga(spec: dict[str, Any]) -> dict[str, Any]:
    from mape_viz.unlearning import UnlearnConfig, unlearn

    model, forget, retain, dev = build(spec)
    cfg = UnlearnConfig(epochs=spec["steps"] + 1, max_steps=spec["steps"] + 1, score_max_retain=0,
                        score_batch_size=spec["batch_size"])
    mask = None
    mask_s = 0.0
    if spec["selector"] == "mape":
        mask, mask_s = mape_mask(model, forget, retain, "mlf")
    cpu_marks: list[float] = []
    with PeakMemory(dev) as mem:
        res = unlearn(model, "ga", "full", SPARSITY, cfg, mask=mask, forget=forget,
                      retain=retain, device=dev,
                      callbacks=[lambda step, m, row: cpu_marks.append(time.process_time())])
    steps = [h["seconds"] for h in res.history[1:]]  # step 0 is a warm-up
    cpu = [b - a for a, b in zip(cpu_marks, cpu_marks[1:])]
    return {"step_seconds": sum(steps) / len(steps), "n_steps": len(steps),
            "step_cpu_seconds": sum(cpu) / len(cpu),
            "optimizer_state_bytes": res.meta["optimizer_state_bytes"],
            "n_trainable": res.n_trainable_params, "peak_bytes": mem.bytes,
            "mask_seconds": mask_s, "ok": res.ok}


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(spec["threads"])
    fn = {"fisher": worker_fisher, "ga": worker_ga}[spec["what"]]
    return fn(spec)


# ---------------------------------------------------------------------------------------------
# driver side


def spawn(spec: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"worker {spec['what']}/{spec['selector']} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def mib(b: float) -> str:
    return f"{b / 2 ** 20:,.1f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small model (seconds)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seq", type=int, default=32, help="tokens per sample")
    ap.add_argument("--n-retain", type=int, default=None, help="Fisher samples")
    ap.add_argument("--n-forget", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=8, help="GA batch size")
    ap.add_argument("--chunk", type=int, default=4, help="vmap chunk (fisher_batch_size)")
    ap.add_argument("--steps", type=int, default=3, help="timed GA steps (after 1 warm-up)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per worker (1: CPU time ≈ work on a shared machine)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return
    base = {"quick": args.quick, "device": args.device, "seq": args.seq,
            "n_retain": args.n_retain or (32 if args.quick else 32),
            "n_forget": args.n_forget or (16 if args.quick else 16),
            "batch_size": args.batch_size, "chunk": args.chunk, "steps": args.steps,
            "threads": args.threads}
    res: dict[str, Any] = {}
    for what in ("fisher", "ga"):
        for sel in ("full", "mape"):
            t0 = time.perf_counter()
            res[f"{what}_{sel}"] = spawn({**base, "what": what, "selector": sel})
            print(f"  {what}/{sel}: done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    ratios = {
        "fisher_time": res["fisher_mape"]["seconds"] / res["fisher_full"]["seconds"],
        "fisher_cpu_time": res["fisher_mape"]["cpu_seconds"] / res["fisher_full"]["cpu_seconds"],
        "fisher_memory": res["fisher_mape"]["peak_bytes"] / max(1, res["fisher_full"]["peak_bytes"]),
        "optimizer_state": res["ga_mape"]["optimizer_state_bytes"] / res["ga_full"]["optimizer_state_bytes"],
        "ga_step_time": res["ga_mape"]["step_seconds"] / res["ga_full"]["step_seconds"],
        "ga_step_cpu_time": res["ga_mape"]["step_cpu_seconds"] / res["ga_full"]["step_cpu_seconds"],
        "ga_peak_memory": res["ga_mape"]["peak_bytes"] / max(1, res["ga_full"]["peak_bytes"]),
    }
    model = "BERT-base size (110M params, random init)" if not args.quick else "quick (4L, d=256)"
    mem_kind = "CUDA max allocated" if args.device.startswith("cuda") else "peak RSS growth"
    rows = [
        ("SO Fisher time (wall)", f"{res['fisher_full']['seconds']:.2f} s",
         f"{res['fisher_mape']['seconds']:.2f} s", ratios["fisher_time"], TARGETS["fisher_time"]),
        ("SO Fisher time (CPU)", f"{res['fisher_full']['cpu_seconds']:.2f} s",
         f"{res['fisher_mape']['cpu_seconds']:.2f} s", ratios["fisher_cpu_time"],
         TARGETS["fisher_time"]),
        (f"SO Fisher peak memory ({mem_kind})", mib(res["fisher_full"]["peak_bytes"]),
         mib(res["fisher_mape"]["peak_bytes"]), ratios["fisher_memory"], TARGETS["fisher_memory"]),
        ("Fisher entries", f"{res['fisher_full']['n_params']:,}",
         f"{res['fisher_mape']['n_params']:,}",
         res["fisher_mape"]["n_params"] / res["fisher_full"]["n_params"], None),
        ("GA step time (wall)", f"{res['ga_full']['step_seconds']:.2f} s",
         f"{res['ga_mape']['step_seconds']:.2f} s", ratios["ga_step_time"], None),
        ("GA step time (CPU)", f"{res['ga_full']['step_cpu_seconds']:.2f} s",
         f"{res['ga_mape']['step_cpu_seconds']:.2f} s", ratios["ga_step_cpu_time"], None),
        ("GA optimizer state (AdamW)", mib(res["ga_full"]["optimizer_state_bytes"]),
         mib(res["ga_mape"]["optimizer_state_bytes"]), ratios["optimizer_state"],
         TARGETS["optimizer_state"]),
        (f"GA run peak memory ({mem_kind})", mib(res["ga_full"]["peak_bytes"]),
         mib(res["ga_mape"]["peak_bytes"]), ratios["ga_peak_memory"], None),
    ]
    print(f"\n### bench_unlearn — {model}, {args.device} ({args.threads} thread(s)), "
          f"{base['n_retain']} Fisher samples × {args.seq} tokens (vmap chunk {args.chunk}), "
          f"GA batch {args.batch_size}, sparsity {SPARSITY}\n")
    print("| measure | full | MAPE (90 %) | ratio | target |")
    print("|---|---:|---:|---:|---:|")
    for name, full, mape, ratio, target in rows:
        tgt = f"≤ {target}" + (" ✓" if ratio <= target else " ✗") if target else ""
        print(f"| {name} | {full} | {mape} | {ratio:.3f} | {tgt} |")
    print(f"\nMAPE mask making (scores + greedy), not included above: SO "
          f"{res['fisher_mape']['mask_seconds']:.2f} s, GA {res['ga_mape']['mask_seconds']:.2f} s; "
          f"selected {res['fisher_mape']['n_selected']}")
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / (
        "bench_unlearn_quick.json" if args.quick else "bench_unlearn.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "settings": base, "model": model, "memory": mem_kind, "results": res, "ratios": ratios,
        "targets": TARGETS, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "cpu_count": os.cpu_count()}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
