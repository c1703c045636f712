"""The command line: help, and user mistakes ending in one clear line with a non-zero exit code."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgecls.cli import main, upgrade_legacy_args
from edgecls.cli.docs import commands

COMMANDS = [name for name, _ in commands()]  # the real typer command list


def run_main(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize("entry", [["edgecls"], [sys.executable, "-m", "edgecls"]])
def test_help_lists_the_commands_without_importing_tensorflow(entry):
    bin_dir = __import__("pathlib").Path(sys.executable).parent
    cmd = [str(bin_dir / "edgecls")] if entry == ["edgecls"] else entry
    probe = ("import sys, runpy; sys.argv=['edgecls','--help']\n"
             "try:\n    runpy.run_module('edgecls', run_name='__main__')\nexcept SystemExit: pass\n"
             "assert 'tensorflow' not in sys.modules, 'help must not import TensorFlow'\n")
    result = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert {"train", "evaluate", "models", "demo", "recipes", "predict", "bench", "bundle", "quantize", "prune",
            "export", "optimize", "gradcam", "report", "device", "device check"} <= set(COMMANDS)
    listed = result.stdout.split("Commands:")[1]
    for command in COMMANDS:
        group, _, sub = command.partition(" ")  # `device check` is listed by `edgecls device --help`
        assert f"\n  {group} " in listed, command
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60).returncode == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "{tmp}/missing", "--out", "{tmp}/run"], "not found"),
        (["train", "{tmp}/empty", "--out", "{tmp}/run"], "{tmp}/empty"),
        (["train", "{tmp}/one", "--out", "{tmp}/run", "--weights", "none"], "one class"),
        (["train", "{tmp}/data", "--out", "{tmp}/run", "--arch", "nope"], "unknown architecture 'nope'"),
        (["train", "{tmp}/data", "--out", "{tmp}/run", "--arch", "efficientnet_b0", "--alpha", "0.5"],
         "efficientnet_b0 has no width multiplier"),
        (["train", "{tmp}/data", "--out", "{tmp}/run", "--arch", "resnet50", "--alpha", "0.75"],
         "resnet50 has no width multiplier, so --alpha (model.alpha) must be 1, got 0.75"),
        (["train", "{tmp}/data", "--out", "{tmp}/run", "--config", "{tmp}/missing.yaml"], "config not found"),
        (["train", "--out", "{tmp}/run", "--resume"], "nothing to resume"),
        (["evaluate", "{tmp}/data"], "not a run folder"),
        (["evaluate", "{tmp}/bad.keras", "--data", "{tmp}/data"], "not a Keras model file"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(args, message, tmp_path, make_images, capsys):
    make_images(tmp_path / "data", per_class=4)
    make_images(tmp_path / "one", classes=("only",), per_class=4)
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.keras").write_bytes(b"garbage")
    code, out, err = run_main([a.format(tmp=tmp_path) for a in args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message.format(tmp=tmp_path) in lines[0]
    assert "Traceback" not in err + out


def test_a_real_process_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edgecls", "train", str(tmp_path / "nowhere"), "--out",
                             str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in result.stderr


def test_recipes_are_listed_with_their_purpose(capsys):
    code, out, _ = run_main(["recipes"], capsys)
    assert code in (0, None)
    assert "demo_digits:" in out


def test_quiet_is_the_one_spelling_and_no_progress_a_hidden_alias(tmp_path, capsys):
    from edgecls.cli.docs import help_text

    for name, command in commands():
        names = {opt for param in command.params for opt in getattr(param, "opts", [])}
        if "--no-progress" in names:
            assert "--quiet" in names and "-q" in names, name
            assert "--no-progress" not in help_text(name), name
    # The alias still parses: the command goes on to the real (missing-file) error, not a usage error.
    code, out, err = run_main(["gradcam", str(tmp_path / "nope.keras"), str(tmp_path), "--out", str(tmp_path / "c"),
                               "--no-progress"], capsys)
    assert code == 2 and err.startswith("error: ") and "No such option" not in err, err


def test_old_bench_json_file_spelling_is_upgraded_with_a_note():
    args, notes = upgrade_legacy_args(["bench", "run", "--json", "out/bench.json", "--data", "d"])
    assert args == ["bench", "run", "--json-out", "out/bench.json", "--data", "d"] and len(notes) == 1
    args, notes = upgrade_legacy_args(["--debug", "bench", "run", "--json=b.JSON"])
    assert args == ["--debug", "bench", "run", "--json-out=b.JSON"] and notes
    for unchanged in (["bench", "run", "--json", "--data", "d"], ["bench", "run", "--data", "d", "--json"],
                      ["predict", "m.tflite", "--json", "x.json"]):
        assert upgrade_legacy_args(unchanged) == (unchanged, [])


# --- `--json`: JSON records on stdout and nothing else, for every command that has it -------------

def _write_images(root, classes=("a", "b", "c"), per_class=10):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        colour = rng.integers(0, 256, 3)
        for i in range(per_class):
            pixels = np.clip(colour + rng.integers(-20, 21, (16, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"img_{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def json_run(tmp_path_factory):
    """A tiny_cnn run trained by ``edgecls train ... --json``: (run, data, stdout, stderr)."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("cli_json")
    data = _write_images(root / "data")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        main(["train", str(data), "--out", str(root / "run"), "--arch", "tiny_cnn", "--img-size", "32", "--epochs",
              "1", "--weights", "none", "--batch-size", "8", "--patience", "0", "--json"])
    assert exit_info.value.code in (0, None), err.getvalue()
    return root / "run", data, out.getvalue(), err.getvalue()


def _json_alone(code, out, err):
    assert code in (0, None), err
    assert out.lstrip()[:1] in ("{", "["), out[:200]
    return json.loads(out)  # fails on anything but one JSON document


def test_train_json(json_run):
    run, _, out, err = json_run
    record = _json_alone(0, out, err)
    assert record["run_dir"] == str(run) and record["epochs"] == 1
    assert 0.0 <= record["metrics"]["accuracy"] <= 1.0
    assert record["metrics"] == json.loads((run / "metrics.json").read_text())
    assert "Epoch 1/1" in err  # Keras' log went to stderr, not away


def test_evaluate_json(json_run, capsys):
    run, data, _, _ = json_run
    metrics = _json_alone(*run_main(["evaluate", str(run), "--data", str(data), "--json"], capsys))
    assert metrics["report_dir"] == str(run / "eval") and metrics["num_samples"] == 30
    assert metrics == json.loads((run / "eval" / "metrics.json").read_text())


def test_quantize_export_prune_json(json_run, capsys):
    run, _, _, _ = json_run
    records = _json_alone(*run_main(["quantize", str(run), "--int8", "--calibration", "8", "--json"], capsys))
    assert [r["variant"] for r in records] == ["int8"]
    assert records[0]["path"] == str(run / "exports" / "int8.tflite") and Path(records[0]["path"]).is_file()
    records = _json_alone(*run_main(["export", str(run), "--format", "tflite", "--json", "-q"], capsys))
    assert [Path(r["path"]).name for r in records] == ["float32.tflite"]
    pruned = _json_alone(*run_main(["prune", str(run), "--sparsity", "0.5", "--epochs", "1", "--json"], capsys))
    assert pruned["path"] == str(run / "exports" / "pruned.keras")
    assert [Path(r["path"]).name for r in pruned["records"]] == ["pruned.keras", "pruned_float32.tflite"]
    assert pruned["report"] == json.loads((run / "exports" / "pruning_report.json").read_text())


def test_predict_and_bench_json(json_run, tmp_path, capsys):
    run, data, _, _ = json_run
    model = run / "model.keras"
    records = _json_alone(*run_main(["predict", str(model), str(data / "a"), "--json", "--top-k", "2"], capsys))
    assert len(records) == 10 and all(len(r["top_k"]) == 2 for r in records)
    quick = ["--runs", "2", "--rounds", "1", "--warmup", "0", "--e2e-images", "1"]
    code, out, err = run_main(["bench", str(model), "--data", str(data), "--runtime", "keras", *quick, "--json",
                               "--csv", str(tmp_path / "b.csv")], capsys)
    records = _json_alone(code, out, err)
    assert [(r["runtime"], r["images"]) for r in records] == [("keras", 30)]
    assert "p50" in err and (tmp_path / "b.csv").is_file()  # the table went to stderr; the file was written
    # The old `--json FILE` still writes the file, says it is deprecated, and keeps the table on stdout.
    code, out, err = run_main(["bench", str(model), "--data", str(data), "--runtime", "keras", *quick, "--json",
                               str(tmp_path / "old.json")], capsys)
    assert code in (0, None) and "deprecated" in err and "--json-out" in err
    assert json.loads((tmp_path / "old.json").read_text())[0]["runtime"] == "keras"
    assert "p50" in out


@pytest.mark.slow  # builds every registered model in a fresh process (~23 s); the in-process JSON tests run by default
def test_models_json_in_a_real_process_has_nothing_else_on_stdout():
    result = subprocess.run([sys.executable, "-m", "edgecls", "models", "--img-size", "32", "--json"],
                            capture_output=True, text=True, timeout=300)
    rows = _json_alone(result.returncode, result.stdout, result.stderr)
    assert {"tiny_cnn", "mobilenet_v3_small"} <= {row["name"] for row in rows}
    assert all(row["img_size"] == 32 and row["params"] > 0 for row in rows)


def test_optimize_json_and_report(json_run, capsys):
    run, _, _, _ = json_run
    assert (run / "report.html").is_file()  # train rebuilt the run's report at its end
    code, out, err = run_main(["optimize", str(run), "--time-budget", "40s", "--json", "-q"], capsys)
    records = json.loads(out)  # the leaderboard, one record per candidate
    chosen = [r for r in records if r["chosen"]]
    assert records and len(chosen) <= 1
    assert code == (0 if chosen else 3), err
    for record in records:
        assert {"variant", "format", "path", "val_accuracy", "test_accuracy", "latency_ms", "size_bytes",
                "gzip_bytes", "partitions", "chosen"} <= set(record)
    assert (run / "exports" / "optimize" / "leaderboard.json").is_file()
    if chosen:
        assert (run / "exports" / f"best{Path(chosen[0]['path']).suffix}").is_file()
    code, out, err = run_main(["report", str(run)], capsys)
    assert code in (0, None) and out.strip() == f"report → {run / 'report.html'}", err
