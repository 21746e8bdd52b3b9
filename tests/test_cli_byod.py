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


def test_bench_runs_on_your_model_and_data(tmp_path, capsys):
    base, data = _base_and_data(tmp_path)
    out = tmp_path / "bench"
    argv = ["bench", "--model", base, "--data", data, "--forget", "label-flip:3",
            "--train-config", json.dumps(TRAIN), "--quick", "--methods", "ga,so",
            "--seeds", "0", "--sparsity", "0.5", "--epochs", "1", "--score-max-retain", "16",
            "--fisher-max-samples", "16", "--no-sa", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| *Original* |" in printed and "MAPE-GA" in printed and "MAPE-SO" in printed
    doc = json.loads((out / "records.json").read_text())
    assert doc["task"] == "text-classification" and doc["kind"] == "classification"
    assert doc["task_options"]["forget"] == "label-flip:3"
    assert doc["task_options"]["model"] == base and doc["task_options"]["train"] == TRAIN
    assert doc["overrides"] == {"sa": {"max_steps": 60}}  # no bench presets for your task
    names = [r["name"] for r in doc["experiments"]["compare"]]
    assert names == ["Original", "RT", "GA", "MAPE-GA", "SO", "MAPE-SO"]
    original = doc["experiments"]["compare"][0]
    # the records measure the fine-tuned model on the flipped rows it was given
    task = load_task("text-classification", model=base, data=data, forget="label-flip:3",
                     train=TRAIN)
    assert original["forget"] == pytest.approx(evaluate(task)["forget_acc"])
    assert doc["command"].startswith(f"mape-viz bench --model {base} --data {data} ")
    assert f"--train-config '{json.dumps(TRAIN)}'" in doc["command"]
    assert "--forget label-flip:3" in doc["command"]
    assert (out / "table.md").read_text().startswith("# mape-viz bench: base\n")

    # the same task flags are checked as score / unlearn check them, before any work
    assert main(["bench", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "give --task NAME, or --model" in capsys.readouterr().err
    assert main(["bench", "--task", "toy-sentiment", "--text-column", "x", "--out",
                 str(tmp_path / "x"), "--quiet"]) == 2
    assert "takes no --text-column" in capsys.readouterr().err
    assert main(["bench", "--model", base, "--data", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "x"), "--quiet"]) == 2
    assert not (tmp_path / "x").exists()
