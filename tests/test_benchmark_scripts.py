"""The CIFAR-10 benchmark scripts run end to end (on cifar10-mini, one epoch) and write what they promise."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULT_KEYS = {"train_seconds", "float_accuracy", "int8_accuracy", "int8_model", "int8_latency_ms",
               "int8_size_bytes", "machine"}


def _run(script, *args):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *map(str, args)],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_cifar10_and_variants_scripts_on_the_mini_dataset(cifar10_mini, tmp_path):
    out = tmp_path / "c10"
    _run("cifar10.py", "--data", cifar10_mini, "--out", out, "--recipe", "cifar10_mini_simple_cnn",
         "--epochs", "1", "--pipeline-steps", "2", "--pipeline-rounds", "1", "--reference-epochs", "1")
    result = json.loads((out / "results.json").read_text())
    assert RESULT_KEYS <= set(result)
    row = result["runs"][0]
    assert row["budget"]["budget_seconds"] > 0 and isinstance(row["within_budget"], bool)
    assert 0.0 < row["tta"]["int8"]["tta_accuracy"] <= 1.0 and len(row["tta"]["views"]) == 8
    assert Path(result["int8_model"]).is_file() and result["int8_size_bytes"] > 0
    assert 0.0 < result["int8_accuracy"] <= 1.0 and result["int8_latency_ms"] > 0
    assert result["runs"][0]["pipeline"]["jpeg_over_memory"] > 0

    run = out / "runs" / "cifar10_mini_simple_cnn"
    _run("cifar10_variants.py", "--data", cifar10_mini, "--runs", run, "--out", out, "--skip-xnnpack")
    variants = json.loads((out / "cifar10_variants.json").read_text())
    rows = {r["variant"]: r for r in variants["models"][0]["rows"]}
    # Fine-tuned files are named for the optimizer that tuned them (edgecls' default here)
    assert set(rows) == {"float32", "dynamic", "float16", "int8", "qat_int8_adam", "pruned_int8_adam"}
    assert rows["int8"]["size_bytes"] < rows["float32"]["size_bytes"] / 3
    assert rows["pruned_int8_adam"]["gzip_bytes"] < rows["int8"]["gzip_bytes"]
    assert all(0.0 < r["val_top1"] <= 1.0 for r in rows.values())

    _run("optimize_cifar10.py", "--runs", run, "--variants", out / "cifar10_variants.json", "--out", out / "opt",
         "--time-budget", "10m", "--rounds", "2", "--runs-per-round", "20", "--warmup", "2")
    summary = json.loads((out / "opt" / "optimize_cifar10.json").read_text())
    (entry,) = summary["runs"]
    assert set(entry["side_by_side_ms"]) >= {"float32", "hand_picked"}
    assert entry["leaderboard_rows"] and (out / "opt" / run.name / "leaderboard.csv").is_file()
    assert (out / "opt" / run.name / "pareto.png").is_file()
    assert "## cifar10_mini_simple_cnn" in (out / "opt" / "optimize_cifar10.md").read_text()


def test_airbench_reference_exports_the_recipes_splits_and_writes_its_table(cifar10_mini, tmp_path, monkeypatch):
    import importlib.util

    import numpy as np

    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    splits = tmp_path / "splits.npz"
    _run("airbench_reference.py", "export", "--data", cifar10_mini, "--out", splits)
    arrays = np.load(splits, allow_pickle=False)
    sizes = {split: len(arrays[f"{split}_y"]) for split in ("train", "val", "test")}
    assert all(sizes.values()) and sum(sizes.values()) == 2500
    assert arrays["train_x"].shape[1:] == (32, 32, 3) and arrays["train_x"].dtype == np.uint8

    results = tmp_path / "reference.json"
    row = {"variant": "airbench94", "changes": {}, "epochs": 9.9, "train_images": sizes["train"],
           "s_per_epoch": 90.0, "train_seconds": 900.0, "val_top1": 0.8, "test_top1": 0.79, "test_top1_tta": 0.81}
    results.write_text(json.dumps({"rows": [row]}))
    _run("airbench_reference.py", "table", "--results", results)
    assert "| airbench94 | none | 9.9 |" in results.with_suffix(".md").read_text()

    if importlib.util.find_spec("torch") is None:  # edgecls' own environment: a clear line, not a traceback
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "airbench_reference.py"), "train",
                               "--splits", str(splits), "--results", str(results)], capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr.strip().splitlines() == [
            "error: the train step needs PyTorch (pip install torch) in this environment"]
