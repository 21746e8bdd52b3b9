"""Fine-tuning time of a base checkpoint on CPU (issue #12): the default recipe of
``text-classification`` (``mape_viz.tasks.finetune_base.CPU_RECIPE``, max length
``CPU_MAX_LENGTH``) on 2,000 sentences of at most 64 tokens, for a 6-layer, 384-wide BERT
(12 heads, 1,536 filters, BERT's 30,522-token embedding table: MiniLM-L6's shape).

No download: the model is built from a ``BertConfig`` with random initialisation and saved as
a base checkpoint (no task head); the sentences are generated (made-up words, 6–62 words each,
so every one fits in 64 tokens with [CLS]/[SEP]; the label is whether a marker word occurs).
The loader is timed end to end (``load_task("text-classification", ...)`` with a fresh cache);
the training run's wall and CPU seconds come from its record. The machine may be shared: the
load average before and after is printed and saved with the numbers.

    python benchmarks/bench_finetune.py [--rows 2000] [--threads 1] [--epochs N] [--batch-size B]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import BertConfig, BertModel  # noqa: E402

from mape_viz.tasks import load_task  # noqa: E402
from mape_viz.tasks.finetune_base import CPU_MAX_LENGTH, CPU_RECIPE  # noqa: E402
from mape_viz.tasks.names import unique_names  # noqa: E402
from mape_viz.tasks.tokenizer import build_word_tokenizer  # noqa: E402


def sentences(n: int, seed: int = 0) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    vocab = [w.lower() for w in unique_names(rng, 3000)]
    rows = []
    for _ in range(n):
        words = rng.choices(vocab, k=rng.randint(6, 62))
        label = rng.random() < 0.5
        if label:
            words[rng.randrange(len(words))] = "splendid"
        rows.append((" ".join(words), int(label)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=CPU_RECIPE.threads)
    ap.add_argument("--epochs", type=int, default=CPU_RECIPE.epochs)
    ap.add_argument("--batch-size", type=int, default=CPU_RECIPE.batch_size)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_finetune.json"))
    args = ap.parse_args()
    rows = sentences(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["MAPE_VIZ_CACHE"] = str(root / "cache")
        data = root / "data"
        data.mkdir()
        (data / "train.tsv").write_text("sentence\tlabel\n" +
                                        "".join(f"{s}\t{y}\n" for s, y in rows))
        dev = sentences(200, seed=1)
        (data / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in dev))
        tok = build_word_tokenizer([s for s, _ in rows + dev] + ["splendid"], "bert")
        torch.manual_seed(0)
        model = BertModel(BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                                     num_attention_heads=12, intermediate_size=1536,
                                     pad_token_id=tok.pad_token_id))
        model.save_pretrained(root / "bert")
        tok.save_pretrained(root / "bert")
        n_tokens = [len(ids) for ids in tok([s for s, _ in rows])["input_ids"]]
        recipe = {"epochs": args.epochs, "batch_size": args.batch_size, "threads": args.threads}
        load_before = os.getloadavg()
        start = time.perf_counter()
        task = load_task("text-classification", data=str(data), model=str(root / "bert"),
                         forget="label-flip:16", train=recipe)
        total = time.perf_counter() - start
        load_after = os.getloadavg()
        info = task.meta["models"]["original"]
    rec = {"rows": args.rows, "mean_tokens": sum(n_tokens) / len(n_tokens),
           "max_tokens": max(n_tokens), "max_length": task.meta["options"]["max_length"],
           "recipe": task.meta["options"]["train"], "steps": info["steps"],
           "train_wall_s": info["seconds"], "train_cpu_s": info["cpu_seconds"],
           "s_per_step": info["seconds"] / info["steps"], "load_task_wall_s": total,
           "final_loss": info["final_loss"], "loadavg_before": load_before,
           "loadavg_after": load_after, "cores": os.cpu_count(),
           "torch_threads": args.threads, "model": "BERT 6x384 (12 heads, 1536 filters, "
                                                  "vocab 30522), random init from BertConfig"}
    print("| rows | mean tok | epochs | batch | threads | steps | train wall s | train CPU s "
          "| s/step | load avg before/after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {rec['rows']} | {rec['mean_tokens']:.1f} | {rec['recipe']['epochs']} | "
          f"{rec['recipe']['batch_size']} | {args.threads} | {rec['steps']} | "
          f"{rec['train_wall_s']:.0f} | {rec['train_cpu_s']:.0f} | {rec['s_per_step']:.2f} | "
          f"{load_before[0]:.1f} / {load_after[0]:.1f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(out.read_text()) if out.is_file() else []
    out.write_text(json.dumps(old + [rec], indent=1))


if __name__ == "__main__":
    main()
