"""Write the teaching notebooks ``notebooks/0*.ipynb`` from the cell lists below.

The notebooks are the product; this script only keeps their prose and code in one reviewable
place. Run ``python notebooks/_build.py`` after editing a cell; it writes valid nbformat 4
notebooks with no outputs (what git keeps). Every notebook's first code cell is tagged
``parameters`` (papermill style) and reads ``MAPE_VIZ_QUICK=1`` for the small CI sizes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------------------------
# Shared snippets (each notebook stays self-contained: they are pasted, not imported)

ENV = '''import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here runs offline
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bars'''

TOY_TASK = '''from mape_viz.tasks import SentimentSpec, TrainConfig, load_task

# QUICK: a smaller corpus and shorter training. Every notebook passes the same options, so the
# tiny models are trained once and then loaded from the cache ($MAPE_VIZ_CACHE).
TASK_OPTIONS = dict(
    data=SentimentSpec(n_train=1000, n_test=300, n_canaries=16),
    train=TrainConfig(epochs=25, lr=1e-3, batch_size=32, threads=1, progress=False),
) if QUICK else {}
task = load_task("toy-sentiment", forget="canaries", **TASK_OPTIONS)
task'''


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


def params(text: str):
    cell = code(text)
    cell.metadata["tags"] = ["parameters"]
    return cell


# ---------------------------------------------------------------------------------------------
# 01 — which heads matter

NB01 = [
    md(r"""
# 01 · Which heads matter? Module scores for unlearning

MAPE-Unlearn (*module-aware parameter-efficient unlearning*) removes the influence of a
**forget set** $\mathcal D_f$ from a trained Transformer by updating only a few **modules**
— attention heads and FFN filters (one intermediate neuron of a feed-forward block) — and
leaving everything else bit-for-bit unchanged. This notebook answers the first question:
*which* modules should be updated?

We work on `toy-sentiment`: a tiny BERT classifier (by default 4 layers × 8 heads and 512
filters per layer; the scoring cell below prints the shapes of the model it loaded) trained
on templated movie-review sentences. A few training sentences are **canaries**: they
are reported by a made-up person ("*Vorquen said the plot was dull*") and carry the label that
*contradicts* the sentiment rule, so the model can only get them right by memorising them.
Forgetting the canaries is the unlearning request.
"""),
    params('''
# Parameters (papermill "parameters" cell). CI runs the notebooks with MAPE_VIZ_QUICK=1.
import os

QUICK = os.environ.get("MAPE_VIZ_QUICK") == "1"
N_RETAIN_SCORE = 128 if QUICK else 1024  # retain samples used for the Fisher term
BATCH_SIZE = 32                          # batch size of the scoring passes
SPARSITY = 0.75                          # fraction of modules (per kind) left frozen
SEED = 0
'''),
    code(ENV + '''

import pandas as pd

from mape_viz.choices import list_objectives, list_selectors
from mape_viz.metrics import evaluate
from mape_viz.scores import score_modules
from mape_viz.selection import select_modules
from mape_viz.unlearning import as_config, unlearn
from mape_viz.viz import filter_view, g_vs_fisher, head_heatmap, selected_per_layer'''),
    md(r"""
## The task and its canaries

`load_task` builds the corpus, trains the tiny model on all of $\mathcal D$ and, as the gold
standard, a second model on $\mathcal D_r = \mathcal D \setminus \mathcal D_f$ only (the
*retrained* model that unlearning tries to imitate). Both are cached after the first run.
"""),
    code(TOY_TASK),
    code('''
canaries = task.forget.to_pandas()[["text", "label", "rule_label"]]
canaries["label"] = canaries["label"].map(dict(enumerate(task.label_names)))
canaries["rule_label"] = canaries["rule_label"].map(dict(enumerate(task.label_names)))
canaries.head(6)'''),
    md(r"""
The original model knows the canaries by heart (forget accuracy ≈ 1); the model retrained
without them follows the rule and gets most of them "wrong" — that is what forgetting looks
like here. Retain and test accuracy measure what must be kept.
"""),
    code('''
pd.DataFrame({"original": evaluate(task), "retrained on D_r": evaluate(task, task.retrained_model)}
             ).loc[["forget_acc", "retain_acc", "test_acc", "mia"]].round(3)'''),
    md(r"""
## Masks, and a second-order look at the loss

Put a scalar mask on every module: $m_h$ of shape $(L, H)$ scales each head's context vector
before the attention output projection, $m_f$ of shape $(L, F)$ scales each filter's
activation before the down projection. With all masks at 1 the model is unchanged.
Freezing a module during unlearning is written as $m_i = 0$ in the *selection* problem

$$\mathbf m^* = \arg\min_{\mathbf m}\ \mathcal L(\mathbf m;\theta^*,\mathcal D_r)\quad
\text{s.t.}\ \tfrac{\|\mathbf m\|_0}{n} < 1 - S ,$$

and a second-order Taylor expansion around $\mathbf m = \mathbb 1$ with the Hessian replaced
by the empirical diagonal Fisher $\hat{\mathcal I}$ splits it into one term per module
(paper Eq. 8, objective **MLR**, *minimise the loss on the retain set*, used for
second-order unlearning):

$$\mathbf m^* \approx \arg\min_{\mathbf m} \sum_i (1-m_i)\Big[\sum_{x\in\mathcal D_f}
\nabla_{\mathbf m}\ell(\mathbb 1;x)\Big]_i + \tfrac12 (1-m_i)^2
\big[\hat{\mathcal I}(\mathbb 1;\mathcal D_r)\big]_i ,$$

$$\text{score}_i = g_i + \tfrac12 F_i,\qquad g = \sum_{x\in\mathcal D_f}\nabla_{\mathbf m}\ell(x),
\qquad F = \frac{1}{|\mathcal D_r|}\sum_{x\in\mathcal D_r}\big(\nabla_{\mathbf m}\ell(x)\big)^2 .$$

Freezing module $i$ costs $g_i + \tfrac12 F_i$, so the modules with the **highest** scores are
the ones to keep free (selected for update). Fine-tuning methods (GA, GD, NPO, DPO) maximise
the loss on the forget set instead (**MLF**, Eq. 17): the roles swap, $g$ sums over
$\mathcal D_r$ and $F$ averages over $\mathcal D_f$.

`score_modules` computes both terms from *per-sample* mask gradients (one backward pass per
batch: the mask gets a batch axis), for heads and filters at once.
"""),
    code('''
shuffled = task.retain.shuffle(seed=SEED)
retain_for_scoring = shuffled.select(range(N_RETAIN_SCORE))
forget_batches = list(task.batches(task.forget, BATCH_SIZE))
retain_batches = list(task.batches(retain_for_scoring, BATCH_SIZE))

scores = {objective: score_modules(task.model, forget_batches, retain_batches, objective=objective)
          for objective in list_objectives()}
masks = {objective: select_modules(s, sparsity=SPARSITY, refine=None) for objective, s in scores.items()}
print({objective: s.shape for objective, s in scores.items()})
print("selectors behind the same interface:", list_selectors(include_full=False))'''),
    md(r"""
## Heads: the layer × head heatmap

Each cell is one head's MLR score $g + \tfrac12F$; open squares mark the heads that the
global top-$k$ keeps free at sparsity $S$ (here $\lceil (1-S)\cdot L H\rceil$ heads — heads and
filters are ranked separately, their scales differ). Hover a cell for its $g$, $F$ and rank.
"""),
    code('''
fig = head_heatmap(scores["mlr"], masks["mlr"])
fig.show()'''),
    md(r"""
The score is the sum of two very different terms. $g$ is a signed *sum* over the forget set:
heads whose down-scaling would raise the forget loss get negative $g$. $F$ is a non-negative
*mean* over the retain set: how much the retain loss curves when the head is scaled. Drawing
each term on its own shows which one drives the selection.
"""),
    code('''
for term in ("grad", "fisher"):
    head_heatmap(scores["mlr"], masks["mlr"], term=term).show()'''),
    md(r"""
## Filters: thousands per layer, drawn decimated

Real models have 3,072–11,008 filters per layer, so `filter_view` never draws one cell per
filter: the default view sorts each layer's scores and samples the ranks (dense at the top,
where the selected filters are). The binned view shows where in the layer the high scores
sit.
"""),
    code('''
filter_view(scores["mlr"], masks["mlr"]).show()
filter_view(scores["mlr"], masks["mlr"], mode="binned", bins=16).show()'''),
    code('''
selected_per_layer(masks["mlr"], fraction=True).show()'''),
    md(r"""
## $g$ against $F$

Every module is one point. The score $g + \tfrac12F$ is constant along lines of slope $-2$, so
the selected modules sit towards the upper right. Note the scales: $g$ is a *sum* over the
forget set while $F$ is a *mean* over the retain set, so with all the canaries as the forget
set the gradient term tends to decide and the Fisher to break near-ties.
"""),
    code('''
g_vs_fisher(scores["mlr"], masks["mlr"], kind="filters", scale="log").show()'''),
    md(r"""
## MLR or MLF: different objectives pick different modules

Second-order unlearning (SO) uses MLR; GA / GD / NPO / DPO use MLF. How much do the two
selections overlap?
"""),
    code('''
head_heatmap(scores["mlf"], masks["mlf"]).show()

overlap = []
for kind in ("heads", "filters"):
    a, b = masks["mlr"][kind], masks["mlf"][kind]
    overlap.append({"kind": kind, "selected (each)": int(a.sum()), "in both": int((a & b).sum()),
                    "Jaccard": round(float((a & b).sum() / (a | b).sum()), 3)})
pd.DataFrame(overlap)'''),
    md(r"""
## One canary, all canaries, or random samples?

The modules that matter depend on *what* is forgotten. We score three requests against the
same retain set: a single canary, all canaries, and as many ordinary training sentences
(drawn from rows that are not in the scoring retain set).
"""),
    code('''
requests = {
    "one canary": task.forget.select([0]),
    "all canaries": task.forget,
    "random samples": shuffled.select(range(N_RETAIN_SCORE,
                                            min(len(shuffled), N_RETAIN_SCORE + len(task.forget)))),
}
by_request = {name: score_modules(task.model, list(task.batches(ds, BATCH_SIZE)), retain_batches,
                                  objective="mlr")
              for name, ds in requests.items()}
for name, s in by_request.items():
    fig = head_heatmap(s, select_modules(s, sparsity=SPARSITY, refine=None))
    fig.update_layout(title=f"MLR head scores — request: {name}")
    fig.show()'''),
    code('''
rows = []
for name, s in by_request.items():
    m = select_modules(s, sparsity=SPARSITY, refine=None)
    rows.append({"request": name, "forget samples": len(requests[name]),
                 "selected heads (layer, head)": [tuple(map(int, ix)) for ix in m.heads.nonzero()],
                 "Σ|g| (heads)": float(s.grad.heads.abs().sum()),
                 "½ΣF (heads)": float(s.fisher.heads.sum()) / 2})
pd.DataFrame(rows)'''),
    md(r"""
## Unlearning with this mask — and stopping when forgotten

The request here is the first canary alone. Its MLF mask (the objective of gradient ascent,
GA) is what GA updates: `unlearn(..., forget=one, mask=one_mask)` uses the mask as is. The
notebooks' presets (`mape_viz.presets`, `front_end="notebook"`) turn on **stop when
forgotten**: `stop_when="flipped"` checks the forget rows after each step and ends the run at
the first step where every forget row's prediction has left its memorised label; the epochs
are only an upper bound. For comparison the same run with `stop_when="never"` takes all its
steps. `stopped_at` is the number of
updates in the returned model and `stop_reason` says why the run ended.
"""),
    code('''
one = task.forget.select([0])
one_scores = score_modules(task.model, list(task.batches(one, 1)), retain_batches, objective="mlf")
one_mask = select_modules(one_scores, sparsity=SPARSITY, refine=None)
stop_rows = []
for stop_when in ("flipped", "never"):
    config = as_config({"stop_when": stop_when}, task, method="ga", selector="mape", masked=True,
                       front_end="notebook")
    result = unlearn(task, "ga", "mape", SPARSITY, config, forget=one, mask=one_mask)
    m = evaluate(task, result.model)
    stop_rows.append({"stop_when": stop_when, "steps": result.stopped_at,
                      "stop reason": result.stop_reason,
                      "forget_acc (all canaries)": m["forget_acc"],
                      "test_acc": m["test_acc"], "retain_acc": m["retain_acc"]})
stops = pd.DataFrame(stop_rows).set_index("stop_when")
original_test = evaluate(task)["test_acc"]
stops.round(3)'''),
    code('''
# The lesson in words, computed from the table above (nothing here is typed in by hand).
f, n = stops.loc["flipped"], stops.loc["never"]
for label, r in (("Stop when flipped", f), ("All steps", n)):
    print(f"{label}: {r['steps']} steps ({r['stop reason']}), test accuracy {r['test_acc']:.3f} "
          f"({100 * (r['test_acc'] - original_test):+.1f} points vs the original {original_test:.3f}).")'''),
    md(r"""
**Takeaways.** (1) The score of a module is a forget-gradient term plus half a retain-Fisher
term; higher means "update me". (2) Different requests point at different heads — even one
canary has its own pattern. (3) The gradient term grows with the size of the forget set and
shrinks for samples the model already fits well, while the Fisher term does not: for a
single sample the Fisher (how fragile a module is for the retain set) carries much more
weight. Notebook 02 shows that this is where the layer-wise refinement changes the
selection. (4) Unlearning with the explored mask and stopping when the request is met keeps
the run from taking steps it no longer needs; the two lines above say what that bought on
this run. Notebook 04 compares methods and masks over a range of step sizes (frontiers).
"""),
]

# ---------------------------------------------------------------------------------------------
# 02 — the greedy swap

NB02 = [
    md(r"""
# 02 · The greedy swap: refining a mask inside each layer

The global top-$k$ of notebook 01 treats modules as independent: it uses only the diagonal of
the Fisher. Inside one layer, modules interact — scaling two heads together can hurt the
retain loss more (or less) than the sum of scaling each alone. MAPE-Unlearn therefore
refines the selection layer by layer with the **block-diagonal** Fisher (paper Eq. 9).
"""),
    params('''
# Parameters (papermill "parameters" cell). CI runs the notebooks with MAPE_VIZ_QUICK=1.
import os

QUICK = os.environ.get("MAPE_VIZ_QUICK") == "1"
N_RETAIN_SCORE = 256 if QUICK else 1024  # retain samples: Fisher and its low-rank factor
BATCH_SIZE = 32
SPARSITY = 0.75
REQUEST_ROW = 0                          # which ordinary training row to forget
SEED = 0
'''),
    code(ENV + '''

import dataclasses
from functools import partial

import pandas as pd

from mape_viz.choices import list_refine_modes
from mape_viz.scores import score_modules
from mape_viz.selection import layer_cost, select_modules, swap_delta
from mape_viz.ui.widgets import ModuleExplorer
from mape_viz.viz import swap_changes, warm_vs_refined

pd.options.display.float_format = "{:.4g}".format  # layer costs are small numbers'''),
    code(TOY_TASK),
    md(r"""
## The layer cost and the swap

Let $P$ be the **frozen** set of layer $l$ (mask 0) and $U$ its selected set. With the layer's
block of the empirical Fisher $F_l = \frac1N\sum_x \nabla_{\mathbf m}\ell(x)\,
\nabla_{\mathbf m}\ell(x)^\top$, the cost of freezing $P$ is (Eq. 9, minimised)

$$\operatorname{cost}(P) = \sum_{i\in P} g_i + \tfrac12\,\mathbb 1_P^\top F_l\,\mathbb 1_P .$$

The warm start is the global top-$k$ of Eq. 8; the layer keeps its number of frozen modules
$|P|$. Swapping a frozen $i\in P$ (it enters the selection) with a selected $j\in U$ (it is
frozen instead) changes the cost by

$$\Delta(i,j) = g_j - g_i + (v_j - v_i) + \tfrac12\,(F_{ii} + F_{jj}) - F_{ij},
\qquad v = F_l\,\mathbb 1_P ,$$

so with $v$ kept up to date every candidate pair is priced in $O(1)$. One round visits the
frozen modules in descending score order and, for each, makes the swap with the most
negative $\Delta$ if it improves the cost. The library never forms $F_l$ for big layers: it
keeps the $N$ per-sample mask gradients as a low-rank factor ($F_l = G^\top G / N$).

## A request where the refinement matters

With all 16 canaries as the request, the summed forget gradient $g$ dwarfs the Fisher terms
and the warm start is already optimal (we check this at the end). A request for a *single*
ordinary, well-learned training sentence is the opposite case: its gradient is tiny, so the
off-diagonal Fisher terms — the interactions inside a layer — decide.
"""),
    code('''
shuffled = task.retain.shuffle(seed=SEED)
retain_batches = list(task.batches(shuffled.select(range(N_RETAIN_SCORE)), BATCH_SIZE))
request = shuffled.select([N_RETAIN_SCORE + REQUEST_ROW])
print("forget:", request[0]["text"], "→", task.label_names[request[0]["label"]])
forget_batches = list(task.batches(request, 1))

scores = score_modules(task.model, forget_batches, retain_batches, objective="mlr")
masks = {refine: select_modules(scores, sparsity=SPARSITY, refine=refine)
         for refine in list_refine_modes()}  # none (the warm start), greedy, converge, exact

summary = []
for refine, m in masks.items():
    for kind in ("heads", "filters"):
        summary.append({
            "refine": refine, "kind": kind, "selected": m.n_selected()[kind],
            "swaps": sum(s.kind == kind for s in m.swaps),
            "cost before": float(m.cost_before[kind].sum()) if kind in m.cost_before else None,
            "cost after": float(m.cost_after[kind].sum()) if kind in m.cost_after else None})
pd.DataFrame(summary)'''),
    md(r"""
Every swap is recorded (layer, kind, which module entered, which left, $\Delta$, round).
"""),
    code('''
greedy = masks["greedy"]
swaps = pd.DataFrame([dataclasses.asdict(s) for s in greedy.swaps])
swaps.head(10)'''),
    md(r"""
### Checking one swap by hand

The recorded costs and $\Delta$s are plain numbers we can recompute with the same formulas
(`layer_cost`, `swap_delta`) from the scores' gradient term and the Fisher factor.
"""),
    code('''
check = []
for kind in ("heads", "filters"):
    factor = scores.factor[kind]                # (N, L, n) per-sample mask gradients
    for layer in range(scores[kind].shape[0]):
        frozen = ~greedy.warm_start[kind][layer]
        g, G = scores.grad[kind][layer], factor[:, layer]
        check.append({"kind": kind, "layer": layer,
                      "cost_before (recorded)": float(greedy.cost_before[kind][layer]),
                      "layer_cost(warm start)": layer_cost(g, G, frozen.numpy(), n_fisher=scores.n_fisher)})
print(pd.DataFrame(check))

if greedy.swaps:
    first = greedy.swaps[0]
    frozen = ~greedy.warm_start[first.kind][first.layer]
    delta = swap_delta(scores.grad[first.kind][first.layer], scores.factor[first.kind][:, first.layer],
                       frozen.numpy(), first.entered, first.left, n_fisher=scores.n_fisher)
    print(f"first swap: recorded Δ = {first.delta:.3e}, recomputed Δ = {delta:.3e}")'''),
    md(r"""
## What changed, layer by layer

Top: one marker pair per swap — ▲ the module that entered the selection, ▼ the one that was
frozen instead. Bottom: each layer's cost before (warm start) and after the round.
"""),
    code('''
swap_changes(greedy).show()'''),
    code('''
warm_vs_refined(scores, greedy, kind="filters").show()
warm_vs_refined(scores, greedy, kind="heads").show()'''),
    md(r"""
## One round, until convergence, or exact?

The paper makes **one** round. `refine="converge"` repeats rounds until none improves;
`refine="exact"` enumerates every frozen set of each head layer ($\binom{H}{|P_l|}$ subsets,
cheap for $H\le 16$) and reports the greedy's optimality gap per layer.
"""),
    code('''
per_layer = []
for refine, m in masks.items():
    if refine == "none":
        continue
    for kind in ("heads", "filters"):
        for layer, (before, after) in enumerate(zip(m.cost_before[kind], m.cost_after[kind])):
            per_layer.append({"refine": refine, "kind": kind, "layer": layer,
                              "cost before": float(before), "cost after": float(after)})
print("greedy optimality gap on head layers:", masks["exact"].meta["exact_gap"])
pd.DataFrame(per_layer).pivot_table(index=["kind", "layer"], columns="refine", values="cost after")'''),
    md(r"""
### The contrast: forgetting all the canaries

With the 16 canaries as the request, the same refinement (even run to convergence) finds
little or nothing to swap — the summed gradient term already fixes the order.
"""),
    code('''
canary_scores = score_modules(task.model, list(task.batches(task.forget, BATCH_SIZE)), retain_batches,
                              objective="mlr")
canary_mask = select_modules(canary_scores, sparsity=SPARSITY, refine="converge")
print("swaps when forgetting the canaries:", len(canary_mask.swaps))'''),
    md(r"""
## Explore interactively

`ModuleExplorer` puts the figures of notebooks 01–02 behind controls: objective, selector
(MAPE or a baseline), granularity, sparsity and refinement. Scores are computed once per
(objective, selector); moving a slider only re-runs the selection. Pick the *swaps* or
*warm vs refined* view and move the sparsity slider.
"""),
    code('''
explorer = ModuleExplorer(partial(score_modules, task.model, forget_batches, retain_batches),
                          sparsity=SPARSITY, view="swaps")
if explorer.error is not None:  # shown in the explorer's status line; surface it here too
    raise explorer.error
explorer'''),
    md(r"""
**Takeaways.** The warm start solves the diagonal problem exactly; the greedy swap only acts
through the off-diagonal Fisher inside a layer. It matters most when the forget gradient is
small compared to the retain curvature, and on these small layers one round is already
(near-)optimal: compare the costs of `greedy`, `converge` and `exact`.
"""),
]

# ---------------------------------------------------------------------------------------------
# 03 — sparsity trade-off

NB03 = [
    md(r"""
# 03 · The sparsity trade-off (paper Fig. 2 and Fig. 7)

How few modules can we update and still forget? At sparsity $S$, each kind keeps
$\lceil (1-S)\,n\rceil$ of its $n$ modules free and freezes the rest. We sweep $S$ for two
fine-tuning methods (GA and NPO), compare MAPE's selection with a **random** one of the same
size, and compare the granularities: heads only, filters only, or both (Fig. 7).

Fine-tuning methods maximise the forget loss, so their masks use the **MLF** score
(Eq. 17: $g$ summed over $\mathcal D_r$, $F$ averaged over $\mathcal D_f$).

- **GA** (gradient ascent): $\mathcal L_{GA} = -\mathbb E_{(x,y)\in\mathcal D_f}\,[\ell(y|x;\theta)]$.
- **NPO** (negative preference optimisation), with the original model as reference:
  $$\mathcal L_{NPO} = -\frac{2}{\beta}\,\mathbb E_{(x,y)\in\mathcal D_f}\Big[\log\sigma\Big(
  -\beta\log\frac{\pi_\theta(y|x)}{\pi_{\text{ref}}(y|x)}\Big)\Big].$$

An update restricted to a fraction $1-S$ of the modules needs a larger step to move the loss
as much: the paper grid-searches a 10× larger learning rate at $S = 0.9$. We use the same
rule for every sparsity, $\text{lr}(S) = \text{lr}_{\text{full}} / (1 - S)$.
"""),
    params('''
# Parameters (papermill "parameters" cell). CI runs the notebooks with MAPE_VIZ_QUICK=1.
import os

QUICK = os.environ.get("MAPE_VIZ_QUICK") == "1"
METHODS = ["ga"]                   # ["ga", "npo"] adds NPO (twice the run time)
SELECTORS = ["mape", "random"]
SPARSITIES = [0.5, 0.9] if QUICK else [0.5, 0.8, 0.9, 0.95]
SEEDS = [0]                        # [0, 1, 2] for error bars (three times the run time)
N_RETAIN_SCORE = 128 if QUICK else 1024
EVAL_MAX = 300 if QUICK else 500   # rows per split for evaluation (None = all: slower)
'''),
    code(ENV + '''

import pandas as pd

from mape_viz.choices import list_granularities
from mape_viz.experiments import sweep_sparsity
from mape_viz.metrics import evaluate
from mape_viz.presets import preset_values
from mape_viz.unlearning import UnlearnConfig
from mape_viz.viz import sparsity_curves'''),
    code(TOY_TASK),
    md(r"""
## The sweep

`sweep_sparsity` runs `unlearn` (mask + method) and `evaluate` (forget / retain / test
accuracy and the membership-inference attack, MIA: the share of $\mathcal D_f$ an attacker
still takes for training members) for every combination, and returns one tidy record per
run — all the figures need. The full runs take the notebooks' tuned settings for this task
(`preset_values(task, "notebook")`, from the presets table `mape_viz.presets`: learning rate
$10^{-3}$, the tiny model's own training rate, and 5 epochs); `overrides` set the learning
rate of the masked runs, and we call the sweep once per sparsity to apply the
$\text{lr}(S)$ rule. The `full` selector adds one unmasked run per method (recorded at
sparsity 0).
"""),
    code('''
METRICS = ["forget_acc", "retain_acc", "test_acc", "mia"]
tuned = preset_values(task, "notebook")  # the full runs' lr and epochs: {"lr": 1e-3, "epochs": 5, ...}
config = UnlearnConfig(lr=tuned["lr"], epochs=tuned["epochs"], score_max_retain=N_RETAIN_SCORE)
common = dict(config=config, seeds=SEEDS, eval_max_samples=EVAL_MAX, progress=not QUICK)

original = evaluate(task, max_samples=EVAL_MAX)
retrained = evaluate(task, task.retrained_model, max_samples=EVAL_MAX)
full = sweep_sparsity(task, METHODS, ["full"], [0.0], **common)
records = []
for sparsity in SPARSITIES:
    masked_lr = {"masked": {"lr": tuned["lr"] / (1 - sparsity)}}
    # Fig. 2: both selectors on heads and filters together; Fig. 7: MAPE on each kind alone
    records += sweep_sparsity(task, METHODS, SELECTORS, [sparsity], ["both"],
                              overrides=masked_lr, **common)
    records += sweep_sparsity(task, METHODS, ["mape"], [sparsity],
                              [g for g in list_granularities() if g != "both"],
                              overrides=masked_lr, **common)
pd.DataFrame(full + records).groupby(["method", "selector", "granularity", "sparsity"])[METRICS].mean().round(3)'''),
    md(r"""
## Fig. 2: MAPE against a random mask of the same size

Dotted lines: the original model, the model retrained without the canaries (the target) —
forget accuracy should fall towards the retrained model's while test accuracy stays up.
"""),
    code('''
both = [r for r in records if r["granularity"] == "both"]
for metric in ("forget_acc", "test_acc"):
    fig = sparsity_curves(both, y=metric, dash=None,
                          reference={"original": original[metric], "retrained": retrained[metric]})
    fig.show()'''),
    md(r"""
## Fig. 7: heads, filters or both?

Only MAPE masks; one line per granularity. With `heads` every filter stays frozen (and vice
versa), so the same sparsity means very different numbers of trainable parameters.
"""),
    code('''
mape = [r for r in records if r["selector"] == "mape"]
sparsity_curves(mape, y=["forget_acc", "retain_acc", "test_acc"], color="granularity", dash=None).show()'''),
    code('''
full_table = pd.DataFrame(full).groupby("method")[METRICS].mean().round(3)
full_table.index = [f"{m} (full update)" for m in full_table.index]
full_table'''),
    md(r"""
**Reading the curves.** With the larger step that a sparse update needs, a random mask of
the same size frees modules the retain set depends on and costs retain/test accuracy; the
MAPE mask lowers the forget accuracy while keeping the rest close to the original model.
The full updates in the table forget more canaries here, at a visible cost in fidelity. On
the 4-layer world with 32 heads, 10 % of the heads is three heads: the granularity panels
show how much of the work the filters do. Set `SEEDS = [0, 1, 2]` for error bars.
"""),
]

# ---------------------------------------------------------------------------------------------
# 04 — unlearning methods

NB04 = [
    md(r"""
# 04 · Unlearning methods with and without module-aware masks (Table 2)

Each method runs **full** (every parameter may change), with a **SURE** mask (module-level
saliency: the norm of the forget-set gradient of each module's parameters) and with a
**MAPE** mask at the same sparsity. Frozen parameters stay bit-identical.

**Second-order unlearning (SO).** One Newton step from the trained weights $\theta^*$
removes the forget set's influence (Eq. 2), with the Hessian replaced by the damped diagonal
empirical Fisher of the retain set (Eq. 11):

$$\theta \approx \theta^* + \mathbf H_{\theta^*}^{-1}\sum_{x\in\mathcal D_f}\nabla_\theta\ell(\theta^*;x),
\qquad \hat{\mathcal I}(\theta;\mathcal D) = \frac{1}{|\mathcal D|}\sum_{x\in\mathcal D}\nabla\ell(\theta;x)^2 .$$

MAPE-SO restricts both the Fisher and the update to the selected modules (Eq. 10), with the
MLR mask $\mathbf m$:

$$\theta \approx \theta^* + \mathbf m\circ\Big[\mathbf H_{\theta^*}^{-1}\sum_{x\in\mathcal D_f}
\nabla_\theta\ell(\theta^*;x)\Big].$$

**Fine-tuning methods** (MLF masks): GA ascends the forget loss; GD adds a descent term on
$\mathcal D_r$,
$\mathcal L_{GD} = -\mathbb E_{\mathcal D_f}[\ell] + \mathbb E_{\mathcal D_r}[\ell]$; NPO
pushes the model's likelihood of the forget answers below the original model's,
$\mathcal L_{NPO} = -\frac2\beta\,\mathbb E_{\mathcal D_f}\big[\log\sigma\big(-\beta\log
\frac{\pi_\theta(y|x)}{\pi_{\text{ref}}(y|x)}\big)\big]$.
**SA** fine-tunes on $\mathcal D_r$ with an $\ell_1$ penalty $\gamma\|\theta\|_1$, and **RT**
retrains from scratch on $\mathcal D_r$ — the gold standard every method tries to match.
"""),
    params('''
# Parameters (papermill "parameters" cell). CI runs the notebooks with MAPE_VIZ_QUICK=1.
import os

QUICK = os.environ.get("MAPE_VIZ_QUICK") == "1"
SPARSITY = 0.9
SELECTORS = ["full", "mape"]         # add "sure" for the SURE baseline (half again the time)
SA_MAX_STEPS = 60                   # SA walks the whole retain set: cap it (0 = no cap: minutes)
N_RETAIN_SCORE = 128 if QUICK else 1024
FISHER_SAMPLES = 256                 # retain samples for SO's parameter Fisher (0 = all: minutes)
# efficacy-fidelity frontier: step sizes (x the tuned lr / eta) x seeds per method x selector
FRONTIER_METHODS = ["ga"]            # ["ga", "npo"]: twice the run time
FRONTIER_SELECTORS = ["full", "mape"]
FRONTIER_MULTIPLIERS = [0.5, 1.0, 4.0] if QUICK else [0.25, 1.0, 4.0]
FRONTIER_SEEDS = [0]
EVAL_MAX = 300                       # rows per split for the evaluations (None = all: slower)
RUN_PANEL = QUICK                    # run the UnlearnPanel once (CI; ~20 s); else press its button
'''),
    code(ENV + '''

import pandas as pd
from IPython.display import Markdown, display

from mape_viz.choices import list_methods
from mape_viz.experiments import (FrontierConfig, compare_methods, config_for, default_methods,
                                  run_frontier)
from mape_viz.metrics import predict_proba
from mape_viz.presets import preset_targets
from mape_viz.ui.widgets import UnlearnPanel
from mape_viz.unlearning import UnlearnConfig, unlearn
from mape_viz.viz import comparison_table, frontier'''),
    code(TOY_TASK),
    md(r"""
## Run every method × selector

`list_methods(task.kind)` lists the methods that fit a classification task (DPO needs
generated answers and appears in notebook 06); `default_methods` are the paper's Table 2
methods. `compare_methods` runs each method full and with each mask of `SELECTORS` (MAPE; add `"sure"`
for SURE's forget-only saliency), adds the
reference rows (original model, RT, SA on all parameters), evaluates each model and returns
one record per run. `overrides` give the full and the masked runs their own step sizes: the
notebooks' tuned values for this task from the presets table (`mape_viz.presets`) — the tiny
model's training rate $10^{-3}$ for full updates and $2\times$ that for 90 % sparse masks
(the paper's rule is $10\times$; on this world it cost 8 points of test accuracy), $\eta = 10^{-6}$ / $4\cdot10^{-6}$ for SO, at most 5 epochs — and
**stop when forgotten** (`stop_when="flipped"`): a run ends at the first step where every
canary's prediction has left its memorised label, so the `steps` column says how many
updates each run needed and `stop_reason` why it ended.
"""),
    code('''
print("methods for", task.kind, ":", list_methods(task.kind))
config = UnlearnConfig(score_max_retain=N_RETAIN_SCORE, fisher_max_samples=FISHER_SAMPLES)
tuned = preset_targets(task, "notebook")  # {"*": {"epochs": 5}, "full": {"lr": 1e-3, ...}, "masked": ...}
overrides = {**tuned, "sa": {"max_steps": SA_MAX_STEPS}}
records = compare_methods(task, default_methods(task.kind), SELECTORS, sparsity=SPARSITY, config=config,
                          overrides=overrides, eval_max_samples=EVAL_MAX, progress=not QUICK)
cols = ["name", "forget", "mia", "retain", "test", "n_changed_params", "steps", "stop_reason", "seconds"]
table = pd.DataFrame(records)
table[[c for c in cols if c in table.columns]].round(3)'''),
    md(r"""
## Table 2

Efficacy columns (forget accuracy, MIA): lower = more forgetting. Fidelity columns (retain,
test accuracy): higher is better. Bold marks the best value within each method group; RT,
the retrained reference, is in italics. Note how many parameters each run changed: a MAPE
mask at 90 % sparsity touches a small fraction of the model.
"""),
    code('''
comparison_table(records, reference=("rt", "original"),
                 formats={"mia": ".3f", "forget": ".2%", "retain": ".2%", "test": ".2%"}).show()'''),
    md(r"""
**Reading the table.** RT's forget accuracy is the target: the canaries contradict the rule,
so a model that never saw them gets most of them "wrong". Compare each method's full and MAPE
rows (and SURE's, when selected) on both sides at once: how far forget accuracy fell towards RT's, what that
cost in retain and test accuracy, and how many parameters changed (a 90 % sparse mask
touches a small fraction of the model). MAPE's Fisher term is meant to steer the mask away
from modules the retain set relies on, which SURE's forget-only saliency does not; whether
that shows on this run is in the numbers above, at one step size per row — the frontier
below looks across step sizes. For SO, the unlearning rate
$\eta$ sets the trade-off between forgetting and fidelity: try a few values in the panel
below.

## Frontiers: fidelity at equal efficacy

One step size per method cannot answer the paper's question — *does a module mask keep more
fidelity at equal efficacy?* A masked run that forgets less at one learning rate may forget
as much at another and still keep more. So `run_frontier` runs a grid of step sizes (the
tuned lr, or $\eta$ for SO, times a few multipliers) × seeds for each method × selector,
and `viz.frontier` draws each one's Pareto front: forget accuracy (efficacy, lower is
better) against test accuracy (fidelity, higher is better), with the original and the
retrained model (RT) as reference points. A curve further up-left is better. The grid is
kept small so that the notebook runs in about two minutes: add multipliers, methods or seeds
in the parameters cell for a fuller picture (each adds run time).
"""),
    code('''
fc = FrontierConfig(methods=tuple(FRONTIER_METHODS), selectors=tuple(FRONTIER_SELECTORS),
                    sparsity=SPARSITY, multipliers=tuple(FRONTIER_MULTIPLIERS),
                    seeds=tuple(FRONTIER_SEEDS))
front = run_frontier(task, fc, config=config, overrides=tuned, eval_max_samples=EVAL_MAX,
                     progress=not QUICK)
frontier(front).show()'''),
    md(r"""
The table below applies one rule to every curve (printed with it): *fidelity at equal
efficacy* is the front's test accuracy where its forget accuracy reaches RT's plus 5 points
(interpolated along the front; "not reached" if no run forgets that much), and *efficacy at
equal fidelity* is the front's forget accuracy where test accuracy is still within 1 point
of the original's. The sentences after it are written from these numbers by the cell.
"""),
    code('''
display(Markdown(front.markdown()))

def mean_or(spread, fmt="{:.3f}", missing="not reached"):
    return missing if not spread or spread.get("mean") is None else fmt.format(spread["mean"])

for row in front.summary:
    print(f"{row['name']}: {row['runs']} runs; test accuracy at equal efficacy "
          f"{mean_or(row['fidelity_at_efficacy'])}; forget accuracy at equal fidelity "
          f"{mean_or(row['efficacy_at_fidelity'])}; parameters changed (mean) "
          f"{row['n_changed_params'] or 0:.0f}")'''),
    md(r"""
## The canaries, before and after

Probability of the memorised (rule-breaking) label for each canary: the original model is
sure of it; the retrained model is not. A good unlearning run moves towards the retrained
column. The records hold metrics, not models, so we re-run three settings with `unlearn`
itself (the same configuration as in the table).
"""),
    code('''
def p_memorised(model):
    return predict_proba(model, task.batches(task.forget, 64))[1]


runs = {"NPO (full)": ("npo", "full"), "MAPE-NPO": ("npo", "mape"), "MAPE-SO": ("so", "mape")}
models = {name: unlearn(task, method, selector, SPARSITY,
                        config_for(config, overrides, method, selector)).model
          for name, (method, selector) in runs.items()}
before_after = pd.DataFrame({"text": task.forget["text"], "original": p_memorised(task.model),
                             **{name: p_memorised(m) for name, m in models.items()},
                             "retrained (RT)": p_memorised(task.retrained_model)})
before_after.round(3).head(10)'''),
    md(r"""
## Try it yourself: `UnlearnPanel`

Pick a method, a selector, the sparsity and the main hyperparameters (they start from the
same tuned values), press **Run**: the panel evaluates the model before and after and shows
the canaries' predictions and the mask. (Below it is pre-set to MAPE-NPO and run once, so the
executed notebook shows a result.)
"""),
    code('''
panel = UnlearnPanel(task, sparsity=SPARSITY)  # controls start from the notebook presets
panel.controls["method"].value = "npo"
if RUN_PANEL:
    panel.run()
    if panel.error is not None:  # the panel shows errors in its status line; surface them here
        raise panel.error
panel'''),
]

# ---------------------------------------------------------------------------------------------
# 05 — successive requests and relearning

NB05 = [
    md(r"""
# 05 · Successive removal requests (Fig. 3) and the relearning attack (Fig. 4)

Unlearning requests rarely come at once. Two scenarios:

**(a) Request after request on the current model.** Each request is unlearned from the model
that the previous request produced (the mask is re-scored every time). Approximation errors
of each update accumulate; a sparse update confines them to the selected modules.

**(b) Second-order updates from $\theta^*$ (Eq. 12).** Keep running sums instead of the
data: the forget gradients of everything removed so far and the retain Fisher of what is
still kept; every update starts again from the original weights,

$$\theta^t = \theta^* + \eta\,\mathbf m^t\circ\Big[\big(\hat{\mathcal I}(\theta^*;\mathcal D_r^{t})
+\lambda\big)^{-1}\sum_{x\in\mathcal D_f^{t}}\nabla_\theta\ell(\theta^*;x)\Big],$$

with the mask precomputed once from the Fisher of all of $\mathcal D$ (Eq. 13,
$\arg\min_{\mathbf m}\sum_i(1-m_i)^2\hat{\mathcal I}(\mathbb 1;\mathcal D)_i$) and refined per request by the
greedy swap of Eq. 9.
Here $\mathcal D$'s Fisher (the running sum's start, and Eq. 13's) is estimated on
`FISHER_SAMPLES` seeded rows of its 4,000 and scaled to $|\mathcal D|$ (`fisher_max_samples`;
0 = all rows, the paper's exact sum, slower).

The **relearning attack** then asks whether forgetting is robust: fine-tune the unlearned
model on a small part of the forgotten data and watch whether the rest comes back.
"""),
    params('''
# Parameters (papermill "parameters" cell). CI runs the notebooks with MAPE_VIZ_QUICK=1.
import os

QUICK = os.environ.get("MAPE_VIZ_QUICK") == "1"
N_REQUESTS = 4                      # the canaries are removed in this many equal requests
SPARSITY = 0.9
N_RETAIN_SCORE = 128 if QUICK else 256  # retain samples for each request's module scores
FISHER_SAMPLES = 256                    # rows for SO's Fisher: of D_r, and of D in Eq. 12 (0 = all: minutes more)
EVAL_MAX = 300                          # rows per split for evaluation (None = all: slower)
RELEARN_FRACTION = 0.25             # share of the forget set the attacker fine-tunes on
RELEARN_EPOCHS = 6 if QUICK else 10
RELEARN_LR = 1e-3                   # the tiny model's own training rate
'''),
    code(ENV + '''

import pandas as pd

from mape_viz.experiments import relearn, successive
from mape_viz.presets import preset_targets
from mape_viz.unlearning import UnlearnConfig
from mape_viz.viz import relearn_curves, successive_curves'''),
    code(TOY_TASK),
    code('''
KEEP = ["forget_acc", "retain_acc", "test_acc", "mia"]
config = UnlearnConfig(score_max_retain=N_RETAIN_SCORE, fisher_max_samples=FISHER_SAMPLES)
overrides = preset_targets(task, "notebook")  # the tuned lr / eta / epochs of notebook 04
common = dict(config=config, overrides=overrides, eval_max_samples=EVAL_MAX, progress=not QUICK)
print(f"{len(task.forget)} canaries, removed in {N_REQUESTS} requests of {len(task.forget) // N_REQUESTS}")'''),
    md(r"""
## Fig. 3: metrics after each request

`mape_viz.experiments.successive` cuts the forget set into requests (seeded random order)
and records the metrics after every request (request 0 is the original model). The forget
accuracy is measured on *all* canaries that will be requested, so it falls as requests are
served. We run scenario (a) for GA and SO, and scenario (b) — `eq12` — for SO, each full and
with a MAPE mask.
"""),
    code('''
records = successive(task, N_REQUESTS, method="ga", sparsity=SPARSITY, scenarios=["successive"], **common)
records += successive(task, N_REQUESTS, method="so", sparsity=SPARSITY, scenarios=["successive", "eq12"],
                      **common)
pd.DataFrame(records).pivot_table(index=["method", "scenario", "selector", "request"], values=KEEP).round(3)'''),
    code('''
successive_curves(records, y=["forget_acc", "test_acc"]).show()'''),
    md(r"""
## Fig. 4: the relearning attack

The attacker knows a quarter of the canaries and fine-tunes the whole unlearned model on
them (AdamW, constant learning rate). We track the accuracy on **all** canaries and on the
**held-out** canaries the attacker never showed the model — if those come back too, the
forgetting was shallow. The paper relearns its 7B models at lr $10^{-5}$; our tiny models
were trained from scratch at $10^{-3}$, and at $10^{-5}$ a few relearning steps would not
move them, so the attack uses their training rate.
"""),
    code('''
attack = relearn(task, ["ga", "npo"], ["full", "mape"], epochs=RELEARN_EPOCHS,
                 relearn_fraction=RELEARN_FRACTION, lr=RELEARN_LR, batch_size=2, sparsity=SPARSITY,
                 include_rt=True, **common)
pd.DataFrame(attack).pivot_table(index="epoch", columns="name", values="heldout_acc").round(3)'''),
    code('''
relearn_curves(attack, y=["forget_acc", "heldout_acc"],
               labels={"heldout_acc": "held-out canaries accuracy"}).show()'''),
    md(r"""
**Reading the figures.** In scenario (a) every request is a new approximate update of an
already-updated model. For SO, the masked updates can only touch the selected modules and
keep retain/test accuracy close to the original, while the full updates lose more with each
request; Eq. 12 avoids the accumulation altogether by always starting from $\theta^*$. GA
has no such brake: ascending the loss request after request eventually collapses the model,
mask or not — the instability that motivated NPO. In the relearning attack, dashed lines
(full updates) and solid lines (MAPE masks) show how fast the forgotten labels come back
when the attacker fine-tunes on a few of them. Compare the slopes as well as the levels:
on this toy the masked runs forgot fewer canaries to begin with (notebook 04), so their
curves start higher.
"""),
]

# ---------------------------------------------------------------------------------------------
# 06 — tiny-tofu

NB06 = [
    md(r"""
# 06 · A tiny LLM: fictitious authors (TOFU-style)

`tiny-tofu` is the generative counterpart of the toy task, in the spirit of TOFU: questions
about made-up authors (birthplace, genre, books, awards …), answered by a tiny Llama-style
causal LM (RMSNorm, RoPE, SwiGLU, grouped-query attention with 4 query heads sharing 2 K/V
heads). The split `forget10` forgets the last 10 % of the authors. Besides the authors, the
model also learned world facts and real authors, which must survive.

**Metrics** (TOFU paper):

- ROUGE-L recall of the greedy answer, and the normalised answer probability
  $P(a\mid q)^{1/|a|}$;
- the **truth ratio** $R = \frac{\text{mean}_k P(\tilde a_k\mid q)^{1/|\tilde a_k|}}
  {P(\hat a\mid q)^{1/|\hat a|}}$ of perturbed (wrong) answers $\tilde a_k$ against a
  paraphrased correct answer $\hat a$;
- **forget quality**: the p-value of a Kolmogorov–Smirnov test between the truth ratios of
  the unlearned and of the retrained model on the forget set (high = indistinguishable from
  retraining);
- **model utility**: the harmonic mean of the retain / real-author / world-fact metrics.
"""),
    params('''
# Parameters (papermill "parameters" cell). CI runs the notebooks with MAPE_VIZ_QUICK=1.
import os

QUICK = os.environ.get("MAPE_VIZ_QUICK") == "1"
SPLIT = "forget10"
METHODS = ["npo", "dpo"] if QUICK else None  # None: the paper's Table 3 methods
SPARSITY = 0.9
BATCH_SIZE = 8
EVAL_MAX = 12 if QUICK else None   # questions per set for evaluation (None = all)
N_RETAIN_SCORE = 64 if QUICK else 512
'''),
    code(ENV + '''

import pandas as pd

from mape_viz.metrics import evaluate, generate_answers
from mape_viz.scores import score_modules
from mape_viz.selection import select_modules
from mape_viz.experiments import default_methods
from mape_viz.tasks import TofuSpec, TrainConfig, load_task
from mape_viz.unlearning import as_config, unlearn
from mape_viz.viz import comparison_table, filter_view, head_heatmap'''),
    code('''
# QUICK: fewer authors and shorter training (trained once, then cached in $MAPE_VIZ_CACHE).
TASK_OPTIONS = dict(
    data=TofuSpec(n_authors=12),
    train=TrainConfig(epochs=30, lr=3e-3, batch_size=32, threads=1, progress=False),
) if QUICK else {}
task = load_task("tiny-tofu", split=SPLIT, **TASK_OPTIONS)
print("forgotten authors:", task.meta["forget_authors"])
task'''),
    code('''
pd.DataFrame(task.forget.select(range(4)))[["question", "answer", "paraphrased_answer", "perturbed_answer"]]'''),
    md(r"""
What the original and the retrained model answer to a few forget questions (greedy decoding):
"""),
    code('''
prompts = [task.collate.format_prompt(r) for r in task.forget.select(range(4))]
pd.DataFrame({"question": task.forget["question"][:4], "gold": task.forget["answer"][:4],
              "original": generate_answers(task.model, task.tokenizer, prompts, max_new_tokens=24),
              "retrained": generate_answers(task.retrained_model, task.tokenizer, prompts, max_new_tokens=24)})'''),
    md(r"""
## Evaluating

`evaluate` computes the TOFU metrics on forget, retain, real-author and world-fact questions;
`reference` (default: the task's retrained model) is what forget quality compares against.
"""),
    code('''
KEEP = ["forget_rouge", "forget_prob", "forget_truth_ratio", "forget_quality", "retain_rouge",
        "retain_prob", "real_authors_rouge", "world_facts_rouge", "model_utility"]
base = {"original": evaluate(task, task.model, max_samples=EVAL_MAX),
        "retrained": evaluate(task, task.retrained_model, max_samples=EVAL_MAX)}
pd.DataFrame(base).loc[[k for k in KEEP if k in base["original"]]].round(3)'''),
    md(r"""
## Which heads of the LM matter for the forgotten authors?

For fine-tuning methods the mask uses MLF (Eq. 17): $g$ sums the mask gradients of the answer
NLL over the retain questions, $F$ averages their squares over the forget questions. With
grouped-query attention, selecting a query head also frees the K/V rows of its group.
"""),
    code('''
forget_batches = list(task.batches(task.forget, BATCH_SIZE))
# at most N_RETAIN_SCORE retain questions, a shuffled selection (the retain set may be smaller)
n_retain = min(N_RETAIN_SCORE, len(task.retain))
retain_batches = list(task.batches(task.retain.shuffle(seed=0).select(range(n_retain)), BATCH_SIZE))
scores = score_modules(task.model, forget_batches, retain_batches, objective="mlf")
mask = select_modules(scores, sparsity=SPARSITY, refine="greedy")
print(mask.n_selected(), "selected;", len(mask.swaps), "greedy swaps")
head_heatmap(scores, mask).show()
filter_view(scores, mask).show()'''),
    md(r"""
## MAPE-NPO and MAPE-DPO

**DPO** treats "I don't know" as the preferred answer and the true answer as the rejected
one:

$$\mathcal L_{DPO} = -\frac1\beta\,\mathbb E\Big[\log\sigma\Big(\beta\log
\frac{\pi_\theta(y_{\text{idk}}|x)}{\pi_{\text{ref}}(y_{\text{idk}}|x)} - \beta\log
\frac{\pi_\theta(y|x)}{\pi_{\text{ref}}(y|x)}\Big)\Big];$$

**NPO** keeps only the second (negative) term. Each runs full and with a MAPE mask, with the
notebooks' tuned settings for `tiny-tofu` (`front_end="notebook"` in the presets table: 5
epochs, learning rate $10^{-4}$ full and $5\cdot10^{-4}$ masked — larger steps collapse the
tiny LM). This is the loop `mape_viz.experiments.compare_methods` runs for you (notebook 04);
written out, it keeps the unlearned models so that we can read their answers.
"""),
    code('''
records, models = [], {}
for name in ("original", "retrained"):
    m = base[name]
    records.append({"method": "rt" if name == "retrained" else "original", "selector": "full",
                    **{k: m.get(k, float("nan")) for k in KEEP}})
for method in METHODS or default_methods(task.kind):
    for selector in ("full", "mape"):
        config = as_config(dict(batch_size=BATCH_SIZE, score_max_retain=N_RETAIN_SCORE), task,
                           method=method, selector=selector, masked=selector != "full",
                           front_end="notebook")
        result = unlearn(task, method, selector, SPARSITY, config)
        models[method, selector] = result.model
        m = evaluate(task, result.model, max_samples=EVAL_MAX)
        records.append({"method": method, "selector": selector, **{k: m.get(k, float("nan")) for k in KEEP}})
pd.DataFrame(records).round(3)'''),
    code('''
comparison_table(records, efficacy=("forget_rouge", "forget_prob", "forget_quality"),
                 fidelity=("retain_rouge", "model_utility"), directions={"forget_quality": "max"},
                 reference=("rt", "original"), fmt=".3f",
                 main_title="tiny-tofu: forget quality and model utility").show()'''),
    code('''
answers = {"question": task.forget["question"][:4], "gold": task.forget["answer"][:4]}
for (method, selector), model in models.items():
    if method in ("npo", "dpo"):
        name = f"{'MAPE-' if selector == 'mape' else ''}{method.upper()}"
        answers[name] = generate_answers(model, task.tokenizer, prompts, max_new_tokens=24)
pd.DataFrame(answers)'''),
    md(r"""
**Reading the results.** Forget ROUGE and probability should drop towards the retrained
model's, forget quality should rise (a high p-value means the unlearned model's truth ratios
look like the retrained model's), and model utility should stay close to the original's. DPO
pushes towards "I don't know"-style answers on the forgotten authors; NPO just lowers the
likelihood of the true answers. Without `QUICK` the task uses 40 authors and the full
evaluation sets, and GA / GD join the comparison.

As in TOFU, each perturbed answer is a *wrong version of the paraphrased answer* (for world
facts and real authors, whose paraphrase is the answer itself, a wrong version of the
answer), so the truth ratio compares a right and a wrong fact in the same wording, and model
utility is a real measurement (the cell below prints this run's values). A tiny model on a
small synthetic corpus: read the numbers as a demonstration of the metrics, not as results.
"""),
    code('''
by_name = {(r["method"], r["selector"]): r for r in records}
print(f"model utility: original {by_name['original', 'full']['model_utility']:.3f}, "
      f"retrained {by_name['rt', 'full']['model_utility']:.3f}")
for (method, selector), r in by_name.items():
    if method not in ("original", "rt"):
        print(f"{method:>4} / {selector:<4}: forget quality {r['forget_quality']:.3g}, "
              f"model utility {r['model_utility']:.3f}")'''),
]

NOTEBOOKS = {
    "01_which_heads_matter.ipynb": NB01,
    "02_greedy_swap.ipynb": NB02,
    "03_sparsity_tradeoff.ipynb": NB03,
    "04_unlearning_methods.ipynb": NB04,
    "05_successive_and_relearning.ipynb": NB05,
    "06_tiny_tofu_llm.ipynb": NB06,
}

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

#: The measured wall time of each notebook, written under its title: a number only where it was
#: measured (``time jupyter nbconvert --execute``, warm model cache), with the machine's load.
_MEASURED = ("{} at default sizes from a warm model cache (`python benchmarks/time_notebooks.py`, "
             "2026-12-03, one torch thread, 2-core machine shared with one other job)")
RUN_TIME = {
    "01_which_heads_matter.ipynb": _MEASURED.format("60 s"),
    "02_greedy_swap.ipynb": _MEASURED.format("29 s"),
    "03_sparsity_tradeoff.ipynb": _MEASURED.format("108 s"),
    "04_unlearning_methods.ipynb": _MEASURED.format("106 s"),
    "05_successive_and_relearning.ipynb": "103 s at default sizes from a warm model cache "
        "(`python benchmarks/time_notebooks.py 05`, 2026-12-03, one torch thread, 2-core machine "
        "shared with other jobs, load average 3.4): the successive-requests cell 53 s, the "
        "relearning cell 30 s. Before Eq. 12 estimated D's Fisher on FISHER_SAMPLES rows: 192 s "
        "at load 1.75, that cell 141 s",
    "06_tiny_tofu_llm.ipynb": "88 s at default sizes from a warm model cache "
        "(`python benchmarks/time_notebooks.py 06`, 2026-12-03, one torch thread, 2-core machine "
        "shared with other jobs, load average 4.3); an earlier run of the same notebook, "
        "sharing the cores with one other job, took 125 s",
}


def with_run_time(name: str, cells: list) -> list:
    """``cells`` with the notebook's measured-time line under the title of its first cell."""
    first = cells[0]
    title, _, rest = first.source.partition("\n")
    line = f"*Run time: {RUN_TIME[name]}*"
    return [md(f"{title}\n\n{line}\n{rest}")] + list(cells[1:])


def build(name: str, cells: list) -> nbformat.NotebookNode:
    cells = with_run_time(name, cells)
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": KERNELSPEC,
        "language_info": {"name": "python", "pygments_lexer": "ipython3"}})
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:02d}"  # stable ids: rebuilding gives no diff
    nbformat.validate(nb)
    return nb


def main(argv: list[str]) -> int:
    names = argv or list(NOTEBOOKS)
    for name in names:
        nb = build(name, NOTEBOOKS[name])
        nbformat.write(nb, HERE / name)
        print(f"wrote notebooks/{name} ({len(nb.cells)} cells)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
