"""End to end on the embedded ``toy-sentiment`` task (trains/loads the tiny models: minutes).

The canaries are training sentences whose label contradicts the sentiment rule: the original
model gets them right only because it memorised them; the model retrained without them gets
(almost) none right. Unlearning them with MAPE-GD at 90 % sparsity and the default
hyperparameters must bring canary accuracy down to the retrained model's level (±10 points)
while test accuracy stays within 3 points of the original model.
"""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def task():
    from mape_viz.tasks import load_task

    return load_task("toy-sentiment", forget="canaries")


@pytest.fixture(scope="module")
def reference(task):
    from mape_viz.metrics import evaluate

    return {"original": evaluate(task, task.model), "retrained": evaluate(task, task.retrained_model)}


@pytest.mark.parametrize("method", ["gd", "npo"])
def test_mape_unlearning_forgets_canaries_like_retraining(task, reference, method):
    from mape_viz.metrics import evaluate
    from mape_viz.unlearn import unlearn

    params = {n: p.detach().clone() for n, p in task.model.named_parameters()}
    res = unlearn(task, method, "mape", 0.9, seed=0)
    after = evaluate(task, res.model)
    numbers = {k: {m: round(v[m], 4) for m in ("forget_acc", "test_acc", "retain_acc")}
               for k, v in {**reference, method: after}.items()}
    print(f"\n{method} (MAPE, 90 %):", json.dumps(numbers), f"{res.seconds:.1f}s",
          f"{res.n_changed_params} entries changed")
    assert res.ok
    assert abs(after["forget_acc"] - reference["retrained"]["forget_acc"]) <= 0.10
    assert abs(after["test_acc"] - reference["original"]["test_acc"]) <= 0.03
    # the task's model is untouched and only the selected modules' slices moved
    assert all(torch.equal(p, params[n]) for n, p in task.model.named_parameters())
    assert res.n_changed_params <= res.n_trainable_params < 0.2 * sum(p.numel() for p in params.values())


def test_rt_uses_the_retrained_model_and_so_runs(task, reference):
    from mape_viz.metrics import evaluate
    from mape_viz.unlearn import unlearn

    rt = unlearn(task, "rt", "full")
    assert evaluate(task, rt.model)["forget_acc"] == reference["retrained"]["forget_acc"]
    so = unlearn(task, "so", "mape", 0.9, dict(fisher_max_samples=512))
    assert so.ok and so.n_changed_params > 0
