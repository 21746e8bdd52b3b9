"""``mape-viz unlearn`` and ``mape-viz bench`` on your model and data (issue #12): the run
folder's metrics.json holds the original, unlearned and (when built) retrained models'
metrics side by side; the bench takes the same task flags as score/unlearn. Tiny BERTs built
from configs and GLUE-layout TSV folders written here (helpers of tests/test_byod.py)."""

from __future__ import annotations

import json

import datasets
import pytest
from test_byod import _glue_folder, _sentiment_rows, base_bert, write_rows

from mape_viz.cli import main
from mape_viz.metrics import evaluate
from mape_viz.tasks import load_task
from mape_viz.unlearning import load_run

TRAIN = {"epochs": 3, "lr": 1e-2, "batch_size": 8, "progress": False, "threads": 1}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Offline, and every cache (ours, datasets') in a temp dir."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MAPE_VIZ_CACHE", str(tmp_path / "mape_cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "ds_cache"))


def _base_and_data(tmp_path) -> tuple[str, str]:
    data = tmp_path / "d"
    write_rows(data / "train.tsv", _sentiment_rows(24))
    write_rows(data / "dev.tsv", _sentiment_rows(8, start=500))
    return base_bert(tmp_path / "base"), str(data)


def test_unlearn_metrics_json_has_original_unlearned_retrained(tmp_path, capsys):
    base, data = _base_and_data(tmp_path)
    out = tmp_path / "run"
    argv = ["unlearn", "--model", base, "--data", data, "--forget", "label-flip:3",
            "--train-config", json.dumps(TRAIN), "--method", "gd", "--selector", "mape",
            "--sparsity", "0.5", "--max-steps", "2", "--lr", "1e-2", "--stop-when", "never",
            "--quiet"]
    assert main(argv + ["--retrained", "--out", str(out)]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    sides = ("original", "unlearned", "retrained")
    assert set(sides) <= set(doc)
    for side in sides:
        assert {"forget_acc", "retain_acc", "test_acc"} <= set(doc[side])
    assert doc["unlearned"] == doc["metrics"]  # the run folder's own field stays
    printed = json.loads(capsys.readouterr().out)
    assert printed["original"] == doc["original"] and printed["retrained"] == doc["retrained"]
    # each side is that model's evaluation: rebuild them from the (cached) task
    task = load_task("text-classification", model=base, data=data, forget="label-flip:3",
                     train=TRAIN, retrained=True)
    assert all(i["cached"] for i in task.meta["models"].values())
    assert dict(evaluate(task)) == pytest.approx(doc["original"])
    assert dict(evaluate(task, task.retrained_model)) == pytest.approx(doc["retrained"])
    assert dict(evaluate(task, load_run(out, task.model))) == pytest.approx(doc["unlearned"])
    assert doc["original"]["forget_acc"] != doc["retrained"]["forget_acc"] or \
        doc["original"]["retain_acc"] != doc["retrained"]["retain_acc"]  # two models

    # no retrained model built: no "retrained"; --no-eval: none of them
    assert main(argv + ["--out", str(tmp_path / "plain")]) == 0
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert {"original", "unlearned"} <= set(plain) and "retrained" not in plain
    assert plain["original"] == doc["original"]
    assert main(argv + ["--out", str(tmp_path / "none"), "--no-eval"]) == 0
    none = json.loads((tmp_path / "none" / "metrics.json").read_text())
    assert not {"original", "unlearned", "retrained"} & set(none) and none["metrics"] == {}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
