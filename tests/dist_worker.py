"""Worker of tests/test_distributed.py: MAPE scores and masks of tiny models, one file per rank.

Run in one process (``python tests/dist_worker.py OUT``) or under a launcher
(``accelerate launch --multi_gpu --num_processes 2 tests/dist_worker.py OUT``; on a machine
without a GPU the processes talk over gloo). Every process gets the same batches; the library
shards them. Each rank writes ``OUT/rank{r}.pt`` (its scores, masks and the batch indices it
computed itself); only the main process writes ``OUT/main.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

import mape_viz as mv  # noqa: E402
from conftest import FAMILIES, make_batch, make_model  # noqa: E402
from mape_viz.distributed import is_main_process, process_info  # noqa: E402
from mape_viz.gradients import accumulate_mask_grads  # noqa: E402

#: One encoder, one GPT-2 (Conv1D) and one GQA decoder.
WORKER_FAMILIES = ("bert", "gpt2", "llama")
#: A factor cap that ends inside a batch (batch sizes 2, 3, 4, 2, ...).
MAX_FACTOR = 7


def batches(kind: str, n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """``n`` right-padded batches of sizes 2, 3, 4, 2, ...; batch 1 carries 3 extra all-padding
    columns (trimmed by the scoring pass)."""
    out = []
    for i in range(n):
        b = make_batch(kind, bsz=2 + i % 3, seq=9, seed=seed + i)
        if i == 1:
            extra = 3
            b = dict(b)
            b["input_ids"] = torch.cat([b["input_ids"], torch.zeros(b["input_ids"].shape[0], extra, dtype=torch.long)], 1)
            b["attention_mask"] = torch.cat([b["attention_mask"], torch.zeros(b["attention_mask"].shape[0], extra, dtype=torch.long)], 1)
            if b["labels"].dim() == 2:
                b["labels"] = torch.cat([b["labels"], torch.full((b["labels"].shape[0], extra), -100)], 1)
        out.append(b)
    return out


class OneShot:
    """An iterable without ``len`` or indexing (like a DataLoader): the shard skips batches."""

    def __init__(self, items: list) -> None:
        self.items = items

    def __iter__(self):
        return iter(self.items)


def run(out: Path) -> None:
    torch.set_num_threads(1)
    info = process_info()
    result: dict[str, dict] = {"world": info.world, "rank": info.rank}
    for fam in WORKER_FAMILIES:
        model = make_model(fam)
        kind = FAMILIES[fam][2]
        forget, retain = batches(kind, 5, 100), batches(kind, 7, 200)
        for objective in ("mlr", "mlf"):
            f, r = (OneShot(forget), OneShot(retain)) if objective == "mlf" else (forget, retain)
            s = mv.score_modules(model, f, r, objective=objective, max_factor=MAX_FACTOR)
            mask = mv.select_modules(s, sparsity=0.5, refine="greedy")
            result[f"{fam}/{objective}"] = {
                "heads": s.heads, "filters": s.filters,
                "grad_heads": s.grad.heads, "grad_filters": s.grad.filters,
                "fisher_heads": s.fisher.heads, "fisher_filters": s.fisher.filters,
                "factor_heads": s.factor.heads, "factor_filters": s.factor.filters,
                "n_fisher": s.n_fisher, "n_forget": s.meta["n_forget"],
                "n_retain": s.meta["n_retain"], "loss_forget": s.meta["loss_forget"],
                "mask_heads": mask.heads, "mask_filters": mask.filters,
            }
        st = accumulate_mask_grads(model, retain, max_factor=0)
        result[f"{fam}/own_batches"] = sorted(i for i, _ in st.batches)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(result, out / f"rank{info.rank}.pt")
    if is_main_process():
        (out / "main.json").write_text(json.dumps({"world": info.world, "written_by": info.rank}))


if __name__ == "__main__":
    run(Path(sys.argv[1]))
