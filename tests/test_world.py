"""The default world: the shipped toy-sentiment weights (shapes, checksums, quality bars), the
small size as a named option, and (slow) a rebuild from scratch that meets the same bars."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from mape_viz.choices import list_tasks
from mape_viz.tasks import cache, load_task, tiny_fit
from mape_viz.tasks.cache import MARKER, ShippedWeightsError, verify_entry, write_shipped
from mape_viz.tasks.tiny_models import TinyLlamaSpec, tiny_llama
from mape_viz.tasks.tokenizer import build_word_tokenizer
from mape_viz.tasks.train import torch_threads
from mape_viz.tasks.toy_sentiment import SIZES
from mape_viz.tasks.world import QUALITY_BARS, build_world, quality_failures, world_quality


@pytest.fixture
def no_training(monkeypatch):
    """Any training call fails: what loads must come from the shipped weights."""
    def refuse(*args, **kwargs):
        raise AssertionError("trained although the weights are shipped")

    monkeypatch.setattr(tiny_fit, "train_model", refuse)


@pytest.fixture(scope="module")
def world():
    """The default world as the app loads it (shipped weights; no training)."""
    return load_task("toy-sentiment", forget="canaries")


def _n_modules(model) -> tuple[int, int]:
    cfg = model.config
    return (cfg.num_hidden_layers * cfg.num_attention_heads,
            cfg.num_hidden_layers * cfg.intermediate_size)


def test_sizes_are_registered_task_names():
    assert set(SIZES) <= set(list_tasks())
    small = SIZES["toy-sentiment-small"].arch
    assert (small.num_hidden_layers, small.num_attention_heads, small.intermediate_size) == \
        (2, 4, 128)


def test_default_world_loads_shipped_weights_without_training(no_training, tmp_path,
                                                              monkeypatch):
    monkeypatch.setenv("MAPE_VIZ_CACHE", str(tmp_path))  # an empty cache: nothing to reuse
    task = load_task("toy-sentiment", forget="canaries")
    assert task.name == "toy-sentiment"
    for role in ("original", "retrained"):
        info = task.meta["models"][role]
        assert info["shipped"] and Path(info["path"]).is_relative_to(cache.SHIPPED_ROOT)
    heads, filters = _n_modules(task.model)
    assert task.model.config.num_hidden_layers >= 4 and task.model.config.num_attention_heads >= 8
    assert heads >= 32 and filters >= 2048
    assert _n_modules(task.retrained_model) == (heads, filters)
    assert len(task.forget) == 32 and all(task.forget["is_canary"])
    assert not any(task.retain["is_canary"])
    assert not any(tmp_path.iterdir())  # the cache was not written


def test_shipped_world_meets_the_quality_bars(world):
    with torch_threads(1):  # a tiny model evaluates fastest on one thread
        quality = world_quality(world, splits=("test", "forget"))
    assert quality_failures(quality) == []
    # the bars themselves, so that a loosened table cannot pass unnoticed
    assert quality["original"]["test"] >= 0.98 and quality["original"]["forget"] >= 0.97
    assert quality["retrained"]["forget"] <= 0.10
    # the accuracies recorded at build time are the ones measured now
    for role in ("original", "retrained"):
        recorded = world.meta["models"][role]["quality"]
        assert {k: recorded[k] for k in quality[role]} == pytest.approx(quality[role], abs=1e-12)


def test_quality_failures_on_hand_made_numbers():
    good = {"original": {"test": 0.99, "forget": 1.0}, "retrained": {"test": 0.985,
                                                                       "forget": 0.0625}}
    assert quality_failures(good) == []
    bad = {"original": {"test": 0.97, "forget": 0.96875}, "retrained": {"test": 0.99}}
    lines = quality_failures(bad)
    assert len(lines) == 3
    assert any("original test" in s for s in lines) and any("original forget" in s for s in lines)
    assert any("retrained forget accuracy None" in s for s in lines)
    assert set(QUALITY_BARS) == {("original", "test"), ("original", "forget"),
                                 ("retrained", "test"), ("retrained", "forget")}


def _tiny_entry(folder: Path) -> Path:
    """A cache entry of a tiny model (as ``save_entry`` writes it)."""
    tok = build_word_tokenizer(["a b c"], "llama")
    model = tiny_llama(TinyLlamaSpec(hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=1), tok)
    entry = folder / "tiny" / "0123456789abcdef"
    cache.save_entry(entry, model, tok, {"role": "original"}, {"seconds": 1.0})
    return entry


def test_write_shipped_records_checksums_and_refuses_to_overwrite(tmp_path):
    entry = _tiny_entry(tmp_path / "cache")
    root = tmp_path / "weights"
    dest = write_shipped(entry, root, extra_info={"quality": {"test": 1.0}})
    marker = verify_entry(dest)
    assert set(marker["sha256"]) == {p.name for p in dest.iterdir() if p.name != MARKER}
    assert marker["sha256"]["model.safetensors"] == cache.file_sha256(
        entry / "model.safetensors")
    assert marker["info"] == {"seconds": 1.0, "quality": {"test": 1.0}}
    with pytest.raises(FileExistsError, match="force"):
        write_shipped(entry, root)
    assert write_shipped(entry, root, force=True) == dest


def test_damaged_shipped_weights_raise_with_the_rebuild_command(tmp_path, monkeypatch,
                                                                no_training):
    root = tmp_path / "weights"
    shutil.copytree(cache.SHIPPED_ROOT, root)
    monkeypatch.setattr(cache, "SHIPPED_ROOT", root)
    weights = sorted(root.glob("toy-sentiment/*/model.safetensors"))
    assert len(weights) == 2
    data = bytearray(weights[0].read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in a weight
    weights[0].write_bytes(bytes(data))
    with pytest.raises(ShippedWeightsError,
                       match=r"model\.safetensors: differs.*build_world\.py --force"):
        load_task("toy-sentiment", forget="canaries")
    weights[0].unlink()
    with pytest.raises(ShippedWeightsError, match=r"model\.safetensors: missing"):
        verify_entry(weights[0].parent)
    marker = weights[1].parent / MARKER
    m = json.loads(marker.read_text())
    del m["sha256"]
    marker.write_text(json.dumps(m))
    with pytest.raises(ShippedWeightsError, match="no sha256 table"):
        verify_entry(weights[1].parent)


def test_other_options_do_not_use_the_shipped_weights(monkeypatch, tmp_path):
    """A different training configuration is a different key: it trains (refused here)."""
    monkeypatch.setenv("MAPE_VIZ_CACHE", str(tmp_path))
    calls = []

    def refuse(model, rows, *args, **kwargs):
        calls.append(len(rows))
        raise RuntimeError("stop")

    monkeypatch.setattr(tiny_fit, "train_model", refuse)
    with pytest.raises(RuntimeError, match="stop"):
        load_task("toy-sentiment", forget="canaries", train={"epochs": 29})
    with pytest.raises(RuntimeError, match="stop"):
        load_task("toy-sentiment", forget="canaries", shipped=False)
    with pytest.raises(RuntimeError, match="stop"):  # original shipped, this D_r is not
        load_task("toy-sentiment", forget="random")
    assert calls == [4000, 4000, 4000 - 128]


@torch.no_grad()
def test_shipped_weights_hold_the_trained_models(world):
    """The two shipped models are different networks (not one copied twice)."""
    a = dict(world.model.named_parameters())
    b = dict(world.retrained_model.named_parameters())
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.heavy  # ~950 CPU-seconds: not in CI (`python -m pytest -m heavy`)
def test_rebuild_from_scratch_meets_the_same_bars(tmp_path):
    """What scripts/build_world.py does, into a temporary root (about 20 min on a loaded
    2-core machine)."""
    res = build_world(tmp_path / "cache", dest=tmp_path / "weights")
    assert res["failures"] == [] and res["written"]
    assert quality_failures(res["quality"]) == []
    same = {}
    for role, m in res["models"].items():
        rebuilt = Path(m["path"])
        verify_entry(rebuilt)
        assert m["params"] > 800_000
        # the same options hash to the shipped entry's folder: the key is reproducible
        shipped = cache.SHIPPED_ROOT / rebuilt.parent.name / rebuilt.name
        assert (shipped / MARKER).is_file()
        same[role] = m["sha256"] == verify_entry(shipped)["sha256"]["model.safetensors"]
    # bit equality holds on the machine that built the shipped weights; reported, not
    # asserted (other CPUs / torch versions may round differently)
    print(f"\nrebuild: {res['build_seconds']:.0f} s, quality {res['quality']}, bit-identical "
          f"to the shipped weights: {same}")
    with pytest.raises(FileExistsError, match="force"):
        build_world(tmp_path / "cache2", dest=tmp_path / "weights")
