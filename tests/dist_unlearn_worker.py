"""Worker of tests/test_distributed.py: masked unlearning (GA, GD, NPO, SA, SO; DPO on causal
LMs; a stop rule on BERT) and full GA of tiny models, one file per rank (docs/design.md §10).

Run in one process (``python tests/dist_unlearn_worker.py OUT``) or under a launcher
(``accelerate launch --multi_gpu --num_processes 2 tests/dist_unlearn_worker.py OUT``; on a
machine without a GPU the processes talk over gloo). Every process gets the same batches and
calls ``mv.unlearn`` as one process would; the library shards the rows of each step. Each rank
writes ``OUT/rank{r}.pt`` (unlearned weights, masks, histories, what changed); every rank calls
``result.save(OUT/runs/<run>)``, which only rank 0 performs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

import mape_viz as mv  # noqa: E402
from conftest import FAMILIES, make_batch, make_model  # noqa: E402
from mape_viz.distributed import process_info  # noqa: E402
from mape_viz.unlearning.second_order import fisher_sum, grad_sum  # noqa: E402
from mape_viz.unlearning.sparse import SparseParams  # noqa: E402

#: One encoder, one GPT-2 (Conv1D) and one GQA decoder.
UNLEARN_FAMILIES = ("bert", "gpt2", "llama")
#: Global forget / retain batch sizes. Paired per step (GD, NPO with a retain weight) they
#: give every kind of row split over 2 ranks: 3+4 (gcd 1: rank 0 takes both, rank 1 nothing),
#: 4+2 (2+1 rows each), 1+5 (rank 0 alone); GA alone: 3 (2+1), 4 (2+2), 1 (1+0).
FORGET_SIZES = (3, 4, 1)
RETAIN_SIZES = (4, 2, 5)
#: Fine-tuning: 2 epochs of 3 steps, linear decay, clipping on (the global norm).
FINETUNE = {"lr": 1e-2, "epochs": 2, "lr_schedule": "linear", "max_grad_norm": 0.5,
            "weight_decay": 0.01}
#: Run name -> (method, selector, config). Masked (MAPE at 50 %) GA, GD, NPO with a retain
#: term, SA (driven by the retain set) and SO; GA of the whole model (every parameter trained,
#: some never reached by a gradient).
RUNS = {
    "ga": ("ga", "mape", FINETUNE),
    "gd": ("gd", "mape", {**FINETUNE, "retain_weight": 0.7}),
    "npo": ("npo", "mape", {**FINETUNE, "npo_retain_weight": 0.5}),
    "sa": ("sa", "mape", {**FINETUNE, "gamma": 1e-3}),
    "so": ("so", "mape", {"eta": 1e-3, "damping": 1e-3}),
    "ga-full": ("ga", "full", {**FINETUNE, "lr": 1e-3}),
}
#: Causal LMs only: masked DPO (forget batches carry "I don't know" twins).
DPO_RUN = ("dpo", "mape", FINETUNE)
#: A stop rule checked every step (classification only, forget labels = the model's own
#: predictions, so forget accuracy starts at 1): one process stops after 2 of 9 steps
#: (accuracy 1.0, 0.125, 0.0); the ranks must stop together at the same step.
STOP_RUN = ("ga", "mape", {**FINETUNE, "lr": 5e-2, "epochs": 3, "stop_when": "forget-acc<=0.1"})
#: The Fisher cap of the direct ``fisher_sum`` check: cuts inside the third retain batch.
FISHER_CAP = 7


def data(fam: str) -> tuple[list[dict], list[dict]]:
    kind = FAMILIES[fam][2]
    forget = [make_batch(kind, bsz=n, seq=9, seed=300 + i) for i, n in enumerate(FORGET_SIZES)]
    retain = [make_batch(kind, bsz=n, seq=9, seed=400 + i) for i, n in enumerate(RETAIN_SIZES)]
    return forget, retain


@torch.no_grad()
def predicted(model: torch.nn.Module, batches: list[dict]) -> list[dict]:
    """The batches relabelled with the model's own predictions."""
    return [{**b, "labels": model(input_ids=b["input_ids"],
                                  attention_mask=b["attention_mask"]).logits.argmax(-1)}
            for b in batches]


def with_idk(batches: list[dict]) -> list[dict]:
    """Causal-LM forget batches with an "I don't know" twin of the same rows (``idk_*``)."""
    out = []
    for i, b in enumerate(batches):
        twin = make_batch("causal_lm", bsz=b["input_ids"].shape[0], seq=9, seed=500 + i)
        out.append({**b, **{f"idk_{k}": v for k, v in twin.items()}})
    return out


def runs_for(fam: str) -> dict:
    """The runs of one family: RUNS, plus the stop rule (classification) or DPO (causal LM)."""
    kind = FAMILIES[fam][2]
    extra = {"ga-stop": STOP_RUN} if kind == "classification" else \
        {"dpo": DPO_RUN} if kind == "causal_lm" else {}
    return {**RUNS, **extra}


def record(res) -> dict:
    mask = res.mask
    return {"state": {k: v.detach().clone() for k, v in res.model.state_dict().items()},
            "mask_heads": mask.heads if mask is not None else None,
            "mask_filters": mask.filters if mask is not None else None,
            "changes": {k: {"dim": c["dim"], "index": c["index"]} for k, c in res.changes.items()},
            "history": res.history, "stopped_at": res.stopped_at,
            "stop_reason": res.stop_reason, "ok": res.ok}


def run(out: Path) -> None:
    torch.set_num_threads(1)
    info = process_info()
    result: dict = {"world": info.world, "rank": info.rank}
    for fam in UNLEARN_FAMILIES:
        model = make_model(fam)
        forget, retain = data(fam)
        mask = None
        for name, (method, selector, cfg) in runs_for(fam).items():
            f = predicted(model, forget) if name == "ga-stop" else \
                with_idk(forget) if name == "dpo" else forget
            res = mv.unlearn(model, method, selector, 0.5, dict(cfg), forget=f, retain=retain)
            result[f"{fam}/{name}"] = record(res)
            res.save(out / "runs" / f"{fam}-{name}")
            mask = res.mask if res.mask is not None else mask
        sparse = SparseParams(model, mask)  # a run's mask, on the base model
        with sparse.attached():
            kind = FAMILIES[fam][2]
            g, n_f = grad_sum(model, sparse, forget, kind)
            s, n_r = fisher_sum(model, sparse, retain, kind, max_samples=FISHER_CAP)
            v, n_v = fisher_sum(model, sparse, retain, kind, max_samples=FISHER_CAP,
                                engine="vmap", chunk=2)
        assert n_v == n_r
        result[f"{fam}/sums"] = {"grad": g, "fisher": s, "fisher_vmap": v, "n_forget": n_f,
                                 "n_retain": n_r}
    out.mkdir(parents=True, exist_ok=True)
    torch.save(result, out / f"rank{info.rank}.pt")


if __name__ == "__main__":
    run(Path(sys.argv[1]))
