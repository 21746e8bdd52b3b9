"""GPU check (issue #13): a training step, the scoring pass and MAPE-GA steps on a random
Llama-shaped model, with peak memory. Prints a markdown table and writes JSON.

    python benchmarks/gpu_check.py            # ≈1.1B params (TinyLlama-1.1B shape), B=8, T=512,
                                              # fp32 weights + bf16 autocast on CUDA
    python benchmarks/gpu_check.py --weights bf16   # bf16 weights (how 7B models are loaded)
    python benchmarks/gpu_check.py --tiny     # 2-layer toy on CPU, fp32 weights + bf16
                                              # autocast on CPU (what CI runs)

Phases, each on the same batch of B sequences of T tokens (the second half labelled):
  train step   — full fine-tuning: forward, backward, AdamW step (under autocast);
  scoring pass — per-sample mask gradients of the batch (``accumulate_mask_grads``), forward
                 under autocast, activation-only backward, float32 reductions;
  MAPE-GA step — one masked gradient-ascent update of ``mv.unlearn`` (90 % sparsity; mask
                 from MLF scores on a forget and a retain batch; steady-state median). The
                 fine-tuning loop has no autocast: it runs in the weights' dtype.
Peak memory: ``torch.cuda.max_memory_allocated`` per phase on CUDA; on CPU the growth of the
process's max RSS (first-phase-heavy; indicative only).
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

import mape_viz as mv
from mape_viz.gradients import accumulate_mask_grads, scoring_autocast
from mape_viz.losses import per_sample_loss
from mape_viz.sitemaps import get_sites
from mape_viz.unlearning.engine import MemoryMeter

RESULTS = Path(__file__).parent / "results"
#: TinyLlama-1.1B's shape (22 layers, hidden 2048, 32 heads / 4 KV heads, FFN 5632).
FULL = dict(vocab_size=32000, hidden_size=2048, num_hidden_layers=22, num_attention_heads=32,
            num_key_value_heads=4, intermediate_size=5632, max_position_embeddings=2048)
TINY = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> tuple[float, int, str]:
    """Median seconds of ``repeats`` calls after one warm-up, and the phase's peak memory."""
    fn()
    sync(device)
    meter = MemoryMeter(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    peak, kind = meter.peak()
    return statistics.median(times), peak, kind


def make_batch(bsz: int, seq: int, vocab: int, device: torch.device, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (bsz, seq), generator=g)
    labels = ids.clone()
    labels[:, : seq // 2] = -100  # prompt half unlabelled
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "labels": labels.to(device)}


def main(argv: list[str] | None = None) -> dict:
    """Run the check (``argv``: command-line flags; default ``sys.argv``); returns the report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="2-layer toy on CPU (CI configuration)")
    ap.add_argument("--batch", type=int, default=None, help="B (default 8; 2 with --tiny)")
    ap.add_argument("--seq", type=int, default=None, help="T (default 512; 16 with --tiny)")
    ap.add_argument("--weights", choices=list(DTYPES), default="fp32", help="weight dtype")
    ap.add_argument("--autocast", choices=["bf16", "fp16", "off"], default="bf16")
    ap.add_argument("--steps", type=int, default=None, help="MAPE-GA steps (default 5; 3 tiny)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3; 2 tiny)")
    ap.add_argument("--device", default=None, help="default: cuda if available (cpu with --tiny)")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/"
                    "gpu_check.json, gpu_check_tiny.json with --tiny)")
    args = ap.parse_args(argv)
    tiny = args.tiny
    bsz = args.batch or (2 if tiny else 8)
    seq = args.seq or (16 if tiny else 512)
    steps = args.steps or (3 if tiny else 5)
    repeats = args.repeats or (2 if tiny else 3)
    device = torch.device(args.device or ("cpu" if tiny or not torch.cuda.is_available() else "cuda"))
    out = Path(args.out or RESULTS / ("gpu_check_tiny.json" if tiny else "gpu_check.json"))
    if device.type == "cpu":
        torch.set_num_threads(1 if tiny else torch.get_num_threads())
    ac = None if args.autocast == "off" else DTYPES[args.autocast]

    torch.manual_seed(0)
    cfg = T.LlamaConfig(**(TINY if tiny else FULL))
    with torch.device(device):
        model = T.LlamaForCausalLM(cfg).to(DTYPES[args.weights]).eval()
    sites = get_sites(model)
    n_params = sum(p.numel() for p in model.parameters())
    forget = make_batch(bsz, seq, cfg.vocab_size, device, seed=1)
    retain = make_batch(bsz, seq, cfg.vocab_size, device, seed=2)

    def autocast():
        return torch.autocast(device.type, dtype=ac, enabled=ac is not None)

    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def train_step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = per_sample_loss(model, forget).mean()
        loss.backward()
        opt.step()

    rows = {}
    rows["train_step"] = timed(train_step, device, repeats)
    opt.zero_grad(set_to_none=True)
    del opt
    if device.type == "cuda":
        torch.cuda.empty_cache()

    def scoring():
        accumulate_mask_grads(model, [forget], max_factor=0, autocast=args.autocast)

    rows["scoring_pass"] = timed(scoring, device, repeats)

    with scoring_autocast(args.autocast):
        scores = mv.score_modules(model, [forget], [retain], objective="mlf", max_factor=bsz)
    mask = mv.select_modules(scores, sparsity=0.9, refine="greedy")
    meter = MemoryMeter(device)
    result = mv.unlearn(model, "ga", mask=mask, forget=[forget] * steps,
                        config={"max_steps": steps, "epochs": 1, "batch_size": bsz})
    ga_peak, ga_kind = meter.peak()
    step_s = [r["seconds"] for r in result.history if "seconds" in r]
    rows["mape_ga_step"] = (statistics.median(step_s[1:] or step_s), ga_peak, ga_kind)

    per_sample_bytes = bsz * sites.n_layers * (sites.n_heads + sites.n_filters) * 4
    report = {
        "config": {"tiny": tiny, "batch": bsz, "seq": seq, "weights": args.weights,
                   "autocast": args.autocast, "ga_steps": steps, "repeats": repeats,
                   "params": n_params, "layers": sites.n_layers, "heads": sites.n_heads,
                   "kv_heads": sites.n_kv_heads, "filters": sites.n_filters,
                   "hidden": cfg.hidden_size, "vocab": cfg.vocab_size},
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "torch": torch.__version__},
        "seconds": {k: v[0] for k, v in rows.items()},
        "peak_memory_bytes": {k: v[1] for k, v in rows.items()},
        "peak_memory_kind": rows["train_step"][2],
        "ratios": {"scoring_vs_train_step": rows["scoring_pass"][0] / rows["train_step"][0],
                   "ga_step_vs_train_step": rows["mape_ga_step"][0] / rows["train_step"][0]},
        "per_sample_mask_grad_bytes": per_sample_bytes,
        "mask": {"selected_heads": int(mask.heads.sum()), "selected_filters": int(mask.filters.sum()),
                 "trainable_params": result.n_trainable_params},
        "ga_ok": result.ok,
    }
    mib = 2 ** 20
    print(f"\nLlama-shaped, {n_params / 1e6:,.1f}M params ({sites.n_layers} layers, {sites.n_heads} "
          f"heads / {sites.n_kv_heads} KV, FFN {sites.n_filters}), B={bsz}, T={seq}, weights "
          f"{args.weights}, autocast {args.autocast}, {report['device_name'] or device.type}\n")
    print("| phase | median s | × train step | peak memory MiB |")
    print("|---|---:|---:|---:|")
    labels = {"train_step": "train step (fwd+bwd+AdamW, full)", "scoring_pass": "scoring pass (per-sample mask grads)",
              "mape_ga_step": "MAPE-GA step (90 % sparsity)"}
    for k, label in labels.items():
        s, peak, _ = rows[k]
        print(f"| {label} | {s:.4f} | {s / rows['train_step'][0]:.2f} | {peak / mib:,.1f} |")
    print(f"\npeak memory: {report['peak_memory_kind']}; per-sample mask gradients "
          f"B·L·(H+F)·4 bytes = {per_sample_bytes / 2 ** 20:.2f} MiB")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
