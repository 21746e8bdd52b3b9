"""Scoring benchmark (issue #2): prints a markdown table and writes JSON.

Side by side in one run, on the same batches:
  (a) MAPE mask-gradient pass vs a plain forward pass vs a training forward+backward;
  (b) batched per-sample mask gradients vs a loop of per-sample backwards at B=32;
  (c) warm start + greedy-swap refinement on random problems shaped like BERT-base
      (12 x 3072 filters, N=512) and Llama-2-7B (32 x 11008, N=256).

    python benchmarks/bench_scoring.py            # BERT-base-shaped model, seq 64
    python benchmarks/bench_scoring.py --quick    # small model, fewer repeats
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers as T

from mape_viz.gradients import frozen, per_sample_mask_grads
from mape_viz.losses import per_sample_loss
from mape_viz.sitemaps import get_sites
from mape_viz.types import ModuleScores, ModuleTerms


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_model(quick: bool) -> torch.nn.Module:
    if quick:
        cfg = T.BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=4,
                           num_attention_heads=4, intermediate_size=512, num_labels=2)
    else:  # BERT-base shape, random weights (no download)
        cfg = T.BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                           num_attention_heads=12, intermediate_size=3072, num_labels=2)
    torch.manual_seed(0)
    return T.BertForSequenceClassification(cfg).eval()


def make_batch(bsz: int, seq: int, vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(5, vocab, (bsz, seq), generator=g),
            "attention_mask": torch.ones(bsz, seq, dtype=torch.long),
            "labels": torch.randint(0, 2, (bsz,), generator=g)}


def bench_passes(model, batch, repeats):
    def forward():
        with torch.no_grad():
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    def train_step():
        model.zero_grad(set_to_none=True)
        per_sample_loss(model, batch).mean().backward()

    def scoring():
        with frozen(model):
            per_sample_mask_grads(model, batch)

    def loop():
        with frozen(model):
            for b in range(batch["input_ids"].shape[0]):
                per_sample_mask_grads(model, {k: v[b:b + 1] for k, v in batch.items()})

    out = {"forward": timeit(forward, repeats), "train_fwd_bwd": timeit(train_step, repeats),
           "scoring_batched": timeit(scoring, repeats)}
    model.zero_grad(set_to_none=True)
    out["per_sample_loop"] = timeit(loop, max(1, repeats // 2))
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
    from mape_viz.selection import select_modules

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small model and fewer repeats")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_scoring.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    model = make_model(args.quick)
    sites = get_sites(model)
    batch = make_batch(args.batch, args.seq, model.config.vocab_size)
    passes = bench_passes(model, batch, args.repeats)
    shapes = {"BERT-base (12x12 heads, 12x3072 filters, N=512)": (12, 12, 3072, 512),
              "Llama-2-7B (32x32 heads, 32x11008 filters, N=256)": (32, 32, 11008, 256)}
    if args.quick:
        shapes = {"BERT-base (12x12 heads, 12x3072 filters, N=512)": (12, 12, 3072, 512)}
    refine = bench_refine(shapes, max(1, args.repeats))
    result = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "torch": torch.__version__},
        "model": {"layers": sites.n_layers, "heads": sites.n_heads, "filters": sites.n_filters,
                  "hidden": model.config.hidden_size, "batch": args.batch, "seq": args.seq},
        "passes_s": passes,
        "ratios": {"scoring_vs_forward": passes["scoring_batched"] / passes["forward"],
                   "scoring_vs_train_step": passes["scoring_batched"] / passes["train_fwd_bwd"],
                   "loop_vs_batched": passes["per_sample_loop"] / passes["scoring_batched"]},
        "refine": refine,
    }
    m = result["model"]
    print(f"\nModel: BERT-shaped, {m['layers']} layers x {m['heads']} heads x {m['filters']} filters, "
          f"hidden {m['hidden']}, batch {m['batch']} x seq {m['seq']}, {torch.get_num_threads()} threads\n")
    print("| pass (one batch) | median s | × forward | × train fwd+bwd |")
    print("|---|---:|---:|---:|")
    for k, label in (("forward", "plain forward"), ("train_fwd_bwd", "training forward+backward"),
                     ("scoring_batched", "MAPE per-sample mask grads (batched)"),
                     ("per_sample_loop", f"per-sample loop ({args.batch} backwards)")):
        v = passes[k]
        print(f"| {label} | {v:.3f} | {v / passes['forward']:.2f} | {v / passes['train_fwd_bwd']:.2f} |")
    print(f"\nbatched vs loop at B={args.batch}: {result['ratios']['loop_vs_batched']:.1f}x faster\n")
    print("| refinement problem (90 % sparsity) | warm start s | warm + greedy s | swaps |")
    print("|---|---:|---:|---:|")
    for r in refine:
        print(f"| {r['problem']} | {r['warm_start_s']:.3f} | {r['greedy_s']:.3f} | {r['swaps']} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
