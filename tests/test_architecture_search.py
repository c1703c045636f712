"""edgecls search: the space, feasibility on the target, the study with its budget, resume, the finalists' choice."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from edgecls.architecture_search import finalists as final
from edgecls.architecture_search.feasibility import Limits, TimingSettings
from edgecls.architecture_search.space import build_space
from edgecls.architecture_search.stages import run_search
from edgecls.errors import EdgeclsError

REPO = Path(__file__).resolve().parents[1]
FAST_TIMING = TimingSettings(rounds=2, runs=5, warmup=1)
FAST_OPTIMIZE = dict(calibration=16, rounds=2, runs=5, warmup=1, qat_epochs=1, prune_epochs=1)
RECIPE = {"train": {"batch_size": 8, "lr": 0.01, "early_stopping_patience": 0, "tensorboard": False},
          "augment": {"flip": False, "rotation": 0, "zoom": 0, "translate": 0}}


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    """Three colour classes, 30 images each at 24×24: learnt in a few epochs by the smallest models."""
    root = tmp_path_factory.mktemp("search-data") / "data"
    rng = np.random.default_rng(0)
    for index, colour in enumerate([(220, 40, 40), (40, 200, 40), (40, 40, 220)]):
        folder = root / f"class{index}"
        folder.mkdir(parents=True)
        for i in range(30):
            pixels = np.clip(np.array(colour) + rng.integers(-70, 71, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def write_space(path: Path, **content) -> Path:
    path.write_text(yaml.safe_dump({**RECIPE, **content}), encoding="utf-8")
    return path


# ------------------------------------------------------------------ the space


def test_default_space_follows_the_registry_and_the_images():
    small = build_space(None, image_side=32)
    archs = {c.arch for c in small.configs}
    assert {"mobilenet_v3_small", "mobilenet_v3_small_minimalistic", "mobilenet_v3_large", "efficientnet_b0", "resnet9",
            "whitened_cnn", "simple_cnn"} == archs  # no resnet50, no b1-b3, no test-only tiny_cnn
    by_arch = lambda arch, configs: [c for c in configs if c.arch == arch]  # noqa: E731
    # pretrained with auto weights: the widths Keras publishes weights for, every size 32..224
    assert {(c.alpha, c.weights) for c in by_arch("mobilenet_v3_small", small.configs)} == {(0.75, "imagenet"), (1.0, "imagenet")}
    assert {(c.alpha, c.weights) for c in by_arch("mobilenet_v3_small_minimalistic", small.configs)} == {(1.0, "imagenet")}
    assert {c.img_size for c in by_arch("mobilenet_v3_small", small.configs)} == {32, 48, 64, 96, 128, 160, 192, 224}
    # from scratch: no larger than the images, at three widths
    assert {(c.alpha, c.img_size) for c in by_arch("resnet9", small.configs)} == {(0.25, 32), (0.5, 32), (1.0, 32)}
    large = build_space(None, image_side=200)
    assert "whitened_cnn" not in {c.arch for c in large.configs}  # built for CIFAR-size images
    assert {c.img_size for c in by_arch("simple_cnn", large.configs)} == {32, 48, 64, 96, 128, 160, 192, 224}


def test_a_space_file_narrows_and_widens(tmp_path):
    space = build_space(write_space(tmp_path / "s.yaml", architectures={"tiny_cnn": {"img_sizes": [40]},
                                                                        "mobilenet_v3_small": {"alphas": [0.5]}},
                                    img_sizes=[32, 64], weights="auto", epochs=4), image_side=32)
    keys = sorted(c.key for c in space.configs)
    # tiny_cnn (test-only) is searched when named; alpha 0.5 has no ImageNet weights, so auto trains it from scratch
    assert keys == ["mobilenet_v3_small-a0.5-32px", "mobilenet_v3_small-a0.5-64px", "tiny_cnn-a1-40px"]
    assert space.epochs == 4 and space.overrides["train"]["batch_size"] == 8


@pytest.mark.parametrize("content, message", [
    ({"architectures": ["no_such_net"]}, "unknown architecture 'no_such_net'"),
    ({"architectures": ["tiny_cnn"], "img_sizes": [16]}, "tiny_cnn needs img_size of at least 32, got 16"),
    ({"architectures": {"efficientnet_b0": {"alphas": [0.5]}}}, "efficientnet_b0 has no width multiplier"),
    ({"architectures": []}, "no configuration to search"),
    ({"architectures": {"mobilenet_v3_small": {"alphas": [0.5], "weights": "imagenet"}}}, "ImageNet weights only at alpha"),
    ({"architectures": ["tiny_cnn"], "train": {"epochs": 3}}, "train.epochs is what the search chooses"),
    ({"architectures": ["tiny_cnn"], "colour": 1}, "unknown key(s) colour"),
])
def test_an_impossible_space_is_one_line_before_any_work(tmp_path, colours, capsys, content, message):
    from edgecls.cli import main

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(content), encoding="utf-8")
    with pytest.raises(EdgeclsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_space(space, image_side=32)
    out = tmp_path / "search"
    with pytest.raises(SystemExit) as exit_info:
        main(["search", str(colours), "--out", str(out), "--max-latency-ms", "5", "--space", str(space)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not out.exists()  # nothing was started


# ------------------------------------------------------------------ the choice: validation only


def _candidate(trial, variant, val, test, latency, size=10_000):
    return {"trial": trial, "variant": variant, "config": {"key": f"net{trial}"}, "val_accuracy": val,
            "test_accuracy": test, "latency_ms": latency, "size_bytes": size, "path": f"/x/{trial}/{variant}.tflite"}


def test_choice_is_the_best_validation_within_every_limit_and_never_reads_test():
    # Planted: on test, trial 2 looks best; on validation trial 1 is. Trial 3 is the most accurate but too slow,
    # trial 4 too large.
    candidates = [_candidate(1, "int8", 0.92, 0.80, 4.0), _candidate(2, "int8", 0.88, 0.95, 3.0),
                  _candidate(3, "int8", 0.97, 0.97, 6.0), _candidate(4, "int8", 0.96, 0.96, 1.0, size=2_000_000)]
    limits = Limits(5.0, 1000)
    assert final.choose(candidates, limits)["trial"] == 1
    blind = [{k: v for k, v in c.items() if k != "test_accuracy"} for c in candidates]
    assert final.choose(blind, limits)["trial"] == 1  # the rule has no use for the test figures
    swapped = [dict(c, val_accuracy=c["test_accuracy"]) for c in candidates]
    assert final.choose(swapped, limits)["trial"] == 2  # and would choose otherwise if it read them
    assert final.choose(candidates, Limits(0.5)) is None
    assert final.closest(candidates, Limits(0.5))["trial"] == 4  # misses by the least (1 ms against 0.5)
    rows = final.by_latency_limit(candidates, [3.5, 5.0, 10.0], 1000)
    assert [r["best"]["trial"] for r in rows] == [2, 1, 3]


def test_a_limit_no_finalist_meets_gets_the_best_trial_by_validation_whose_untrained_latency_meets_it(tmp_path, monkeypatch):
    def trial(number, val, int8_ms, int8_bytes=50_000, test=0.5):
        run = tmp_path / f"run{number}"
        run.mkdir()
        (run / "model.keras").write_bytes(b"")
        return {"number": number, "state": "complete", "val_accuracy": val, "test_accuracy": test, "run": str(run),
                "config": {"key": f"net{number}"},
                "untrained": {"int8": {"latency_ms": int8_ms, "size_bytes": int8_bytes},
                              "float32": {"latency_ms": 3 * int8_ms, "size_bytes": 4 * int8_bytes}}}

    # trial 1 is the finalist (its variants 0.8 ms and more); under 0.5 ms trial 2 is too slow untrained, trial 3's
    # int8 is too large for 100 KB, trial 4 fits (and its test top-1, the best, is never read)
    trials = [trial(1, 0.90, 0.7), trial(2, 0.85, 0.6), trial(3, 0.84, 0.3, int8_bytes=200_000), trial(4, 0.80, 0.4),
              trial(5, 0.70, 0.1, test=0.99)]
    candidates = [_candidate(1, "int8", 0.90, 0.9, 0.8), _candidate(1, "float32", 0.91, 0.9, 1.6)]
    picks = final.for_other_limits(trials, candidates, [0.5, 1.0, 0.45], 100)
    assert [(limit, t["number"]) for limit, t in picks] == [(0.45, 4), (0.5, 5)]  # 1.0 is met by the finalist
    assert final.for_other_limits(trials, candidates, [0.05], None) == []  # no trial's untrained latency meets it
    # trial 4's variants, once trained (0.42 ms), meet 0.5 ms too: trial 5 is not compressed for it
    compressed = []
    monkeypatch.setattr(final, "compress", lambda t, **_: compressed.append(t["number"]) or
                        [_candidate(t["number"], "int8", t["val_accuracy"], 0.5, 0.42)])
    more, found = final.compress_for_limits(trials, candidates, [0.45, 0.5], 100, say=lambda _: None)
    assert compressed == [4] and [t["number"] for t in more] == [4] and found[0]["trial"] == 4
    rows = final.by_latency_limit(candidates + found, [0.45, 0.5, 1.0], 100)
    assert [r["best"]["trial"] for r in rows] == [4, 4, 1]


def test_the_queue_takes_one_of_each_architecture_in_turn_fastest_first():
    from edgecls.architecture_search.feasibility import queue_order

    def record(arch, alpha, ms, feasible=True):
        return {"config": {"arch": arch, "key": f"{arch}-a{alpha}"}, "feasible": feasible,
                "formats": {"int8": {"latency_ms": ms}}}

    records = [record("mnv3", 1.0, 0.3), record("mnv3", 0.5, 0.1), record("mnv3", 0.75, 0.2),
               record("resnet9", 0.5, 0.9, feasible=False), record("resnet9", 0.25, 0.4), record("cnn", 1, 0.05)]
    assert queue_order(records) == ["mnv3-a0.5", "resnet9-a0.25", "cnn-a1", "mnv3-a0.75", "mnv3-a1.0"]


# ------------------------------------------------------------------ a whole search


@pytest.fixture(scope="module")
def colour_search(colours, tmp_path_factory):
    folder = tmp_path_factory.mktemp("search")
    space = write_space(folder / "space.yaml", architectures={"tiny_cnn": {"img_sizes": [32, 40]},
                                                              "simple_cnn": {"alphas": [0.25], "img_sizes": [32]}},
                        epochs=30, min_epochs=1, finalists=1)
    # simple_cnn α0.25 (~90 KB float32, ~30 KB int8) misses the size limit in both formats; tiny_cnn fits.
    # 30 epochs take ~8 s here: the 15 s budget ends training inside the second trial.
    result = run_search(colours, folder / "out", max_latency_ms=200, max_size_kb=25, space=space, time_budget=15,
                        timing=FAST_TIMING, optimize_options=FAST_OPTIMIZE, verbose=0)
    return result, folder / "out"


def test_feasibility_drops_what_cannot_meet_the_limits_with_its_figures(colour_search):
    _, out = colour_search
    data = json.loads((out / "feasibility.json").read_text())
    records = {r["config"]["key"]: r for r in data["configurations"]}
    assert set(records) == {"tiny_cnn-a1-32px", "tiny_cnn-a1-40px", "simple_cnn-a0.25-32px"}
    dropped = records["simple_cnn-a0.25-32px"]
    assert not dropped["feasible"] and "misses" in dropped["why"] and "KB" in dropped["why"]
    assert all(f["size_bytes"] > 25 * 1024 and not f["meets"] for f in dropped["formats"].values())
    for key in ("tiny_cnn-a1-32px", "tiny_cnn-a1-40px"):
        kept = records[key]
        assert kept["feasible"] and set(kept["formats"]) == {"int8", "float32"}
        assert all(f["latency_ms"] > 0 and Path(f["path"]).is_file() for f in kept["formats"].values())
        assert kept["where"]["on"] == "host"
    assert data["feasible"] == 2 and data["dropped"] == 1


def test_trials_are_run_folders_and_search_json_says_everything(colour_search):
    result, out = colour_search
    data = json.loads((out / "search.json").read_text())
    trained = [t for t in data["trials"] if t["state"] in ("complete", "pruned") and t["run"]]
    assert {t["config"]["key"] for t in trained} == {"tiny_cnn-a1-32px", "tiny_cnn-a1-40px"}
    for trial in trained:
        run = Path(trial["run"])
        assert run.parent == out / "trials"
        assert all((run / name).is_file() for name in ("config.yaml", "model.keras", "metrics.json", "history.csv"))
        assert 1 <= trial["epochs"] <= 30 and 0 <= trial["val_accuracy"] <= 1 and trial["test_accuracy"] is not None
        assert set(trial["untrained"]) == {"int8", "float32"} and trial["where"]["on"] == "host"
        assert isinstance(trial["pruned"], bool)
    assert data["latency_check"] and {row["format"] for row in data["latency_check"]} == {"int8", "float32"}
    assert all(row["trained_vs_untrained"] > 0 for row in data["latency_check"])
    assert [row["max_latency_ms"] for row in data["by_latency_limit"]] == [100, 200]
    assert (out / "pareto.png").stat().st_size > 1000 and (out / "study.db").is_file()


def test_the_chosen_model_is_the_best_validation_meeting_the_limits(colour_search):
    result, out = colour_search
    assert result.within_limits and result.best_path == out / "exports" / "best.tflite"
    meeting = [c for c in result.candidates if c["latency_ms"] <= 200 and c["size_bytes"] <= 25 * 1024]
    assert result.chosen["val_accuracy"] == max(c["val_accuracy"] for c in meeting)
    best = json.loads((out / "exports" / "best.json").read_text())
    assert best["search"]["why"].startswith("the highest validation top-1") and best["model_file"] == "best.tflite"
    assert best["search"]["config"]["key"] == result.chosen["config"]["key"]
    from edgecls.deploy.runtimes import open_model

    size = result.chosen["config"]["img_size"]
    assert open_model(result.best_path).predict(np.zeros((1, size, size, 3), np.uint8)).shape == (1, 3)  # its sidecar travels


def test_as_fast_as_a_model_times_the_limit_with_the_finalists_side_by_side(colour_search, colours, tmp_path):
    _, first = colour_search
    reference = first / "feasibility" / "simple_cnn-a0.25-32px" / "float32.tflite"  # ~10x tiny_cnn's latency here
    space = write_space(tmp_path / "space.yaml", architectures={"tiny_cnn": {"img_sizes": [32]}}, epochs=2, finalists=1)
    with pytest.raises(EdgeclsError, match="--as-fast-as: no model file at"):
        run_search(colours, tmp_path / "none", as_fast_as=tmp_path / "missing.tflite", space=space, verbose=0)
    result = run_search(colours, tmp_path / "out", as_fast_as=reference, space=space, timing=FAST_TIMING,
                        optimize_options=FAST_OPTIMIZE, verbose=0)
    data = json.loads((tmp_path / "out" / "search.json").read_text())
    timed = data["reference"]
    assert timed["path"] == str(reference) and timed["latency_ms_start"] > 0 and timed["latency_ms_final"] > 0
    assert data["limits"]["max_latency_ms"] == timed["latency_ms_final"]  # the limit as timed beside the candidates
    assert result.within_limits and result.chosen["latency_ms"] <= timed["latency_ms_final"]
    assert all(c["latency_measured"].startswith("interleaved over") and c["finalist_latency_ms"] > 0
               for c in data["candidates"] if c["latency_ms"] is not None)
    best = json.loads((tmp_path / "out" / "exports" / "best.json").read_text())
    assert "the latency limit is float32.tflite's, timed in the same loop" in best["search"]["why"]


def test_the_time_budget_holds_to_within_one_epoch(colour_search):
    result, out = colour_search
    data = json.loads((out / "search.json").read_text())
    longest = 0.0
    for trial in data["trials"]:
        if trial["run"] and (Path(trial["run"]) / "history.csv").is_file():
            import csv

            with open(Path(trial["run"]) / "history.csv") as handle:
                longest = max([longest, *(float(r["epoch_seconds"]) for r in csv.DictReader(handle))])
    used = data["seconds"]["feasibility"] + data["seconds"]["training"]
    assert "time budget" in result.stop_reason
    cut = [t for t in data["trials"] if (t["why"] or "").startswith("time budget")]
    # A trial is cut when its next epoch would not end in time; or a trial ends its epochs just as the budget runs
    # out, or with less of it left than an epoch takes (which one depends on the machine's speed at that moment).
    assert len(cut) <= 1 and all(t["epochs"] < 30 and t["state"] == "complete" for t in cut), cut
    # the budget counts from the start; a trial's end (best weights, test split) is a second or two here, a few
    # more when the rest of the suite shares the cores (one full run overran the 3 s allowed before)
    assert used <= 15 + longest + 6, (used, longest, data["seconds"], cut)


def test_nothing_meets_the_limits_exits_3_naming_the_closest(colours, tmp_path, capsys):
    from edgecls.cli import main

    space = write_space(tmp_path / "space.yaml", architectures={"tiny_cnn": {"img_sizes": [32, 48]}})
    with pytest.raises(SystemExit) as exit_info:
        main(["search", str(colours), "--out", str(tmp_path / "out"), "--max-latency-ms", "0.00001", "--space", str(space),
              "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 3
    assert len(lines) == 1 and lines[0].startswith("nothing meets 1e-05 ms; closest: tiny_cnn-a1-32px"), lines
    records = json.loads((tmp_path / "out" / "feasibility.json").read_text())["configurations"]
    assert records[1]["skipped"] and "not built: at 32 px it already missed the latency limit" in records[1]["why"]
    assert json.loads((tmp_path / "out" / "search.json").read_text())["chosen"] is None
    assert not (tmp_path / "out" / "exports" / "best.tflite").exists()


# ------------------------------------------------------------------ resume after kill -9


def test_resume_after_kill_9_trains_the_interrupted_trial_again(colours, tmp_path):
    import optuna

    space = write_space(tmp_path / "space.yaml", architectures={"tiny_cnn": {"img_sizes": [32]}}, epochs=40, finalists=1)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "edgecls", "search", str(colours), "--out", str(out), "--max-latency-ms", "500",
               "--space", str(space), "--quiet"]
    process = subprocess.Popen(command, cwd=REPO, env=dict(os.environ), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        state = out / "trials" / "0000-tiny_cnn-a1-32px" / "state.json"
        deadline = time.monotonic() + 120
        while not (state.is_file() and json.loads(state.read_text()).get("epoch", 0) >= 1):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the first trial never finished an epoch"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGKILL)  # mid-trial: its process and anything it started
    finally:
        process.wait(30)
    study = optuna.load_study(study_name="edgecls-search", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.get_trials()] == ["RUNNING"]

    with pytest.raises(EdgeclsError, match="already holds a search"):
        run_search(colours, out, max_latency_ms=500, space=space, verbose=0)
    result = run_search(colours, out, max_latency_ms=500, space=space, resume=True, timing=FAST_TIMING,
                        optimize_options=FAST_OPTIMIZE, verbose=0)
    trials = {t["number"]: t for t in result.trials}
    assert trials[0]["state"] == "fail" and trials[0]["why"] == "interrupted: queued again"
    assert trials[1]["retry_of"] == 0 and trials[1]["state"] == "complete" and trials[1]["epochs"] == 40
    assert trials[1]["config"]["key"] == "tiny_cnn-a1-32px" and result.within_limits


def test_a_resumed_search_counts_the_budget_the_earlier_sessions_spent(colours, tmp_path):
    space = write_space(tmp_path / "space.yaml", architectures={"tiny_cnn": {"img_sizes": [32]}}, epochs=30,
                        min_epochs=1, finalists=1)
    out = tmp_path / "out"
    first = run_search(colours, out, max_latency_ms=500, space=space, time_budget=8, timing=FAST_TIMING,
                       optimize_options=FAST_OPTIMIZE, verbose=0)
    spent = json.loads((out / "search.json").read_text())["seconds"]
    assert "time budget" in first.stop_reason and spent["training"] > 0
    again = run_search(colours, out, max_latency_ms=500, space=space, time_budget=8, resume=True, timing=FAST_TIMING,
                       optimize_options=FAST_OPTIMIZE, verbose=0)
    # The first session stops when the next epoch would not fit, so it may leave a sliver of the 8 s unspent:
    # then the resumed one spends that sliver and stops as any budget does.
    if again.stop_reason != "the time budget of 8 s ran out":
        assert again.stop_reason == "the time budget of 8 s was spent by the sessions before this --resume"
        assert [t["number"] for t in again.trials] == [t["number"] for t in first.trials]  # nothing more trained
    assert again.stop_reason.startswith("the time budget of 8 s")
    seconds = json.loads((out / "search.json").read_text())["seconds"]
    assert seconds["training"] >= spent["training"] and seconds["total"] > spent["total"]
    assert again.within_limits and again.chosen["trial"] == first.chosen["trial"]
    feasibility = (out / "feasibility.json").read_bytes()
    with pytest.raises(EdgeclsError, match="checked for other limits, space or target"):
        run_search(colours, out, max_latency_ms=500, also_latency_ms=[900], space=space, time_budget=8, resume=True,
                   timing=FAST_TIMING, verbose=0)
    assert (out / "feasibility.json").read_bytes() == feasibility  # refused before checking anything again


def test_a_pruned_trial_ends_its_run_which_is_finished_like_an_early_stopped_one(colours, tmp_path):
    from edgecls.architecture_search.space import Config
    from edgecls.architecture_search.trials import epoch_reporter, trial_config
    from edgecls.searching.variant_search import Clock
    from edgecls.training.run_state import RunState
    from edgecls.training.trainer import train

    class Trial:  # what the reporter uses of an optuna.Trial: the pruner says stop after the second epoch
        reports = []

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return len(self.reports) >= 2

    space = build_space(write_space(tmp_path / "space.yaml", architectures=["tiny_cnn"], epochs=10), image_side=24)
    reporter = epoch_reporter(Trial(), Clock(None))
    result = train(trial_config(colours, Config("tiny_cnn", 1.0, 32, "none"), space, 1.0), tmp_path / "run", verbose=0,
                   callbacks=[reporter])
    assert [step for step, _ in Trial.reports] == [1, 2] and reporter.stopped.startswith("pruned at epoch 2")
    state = RunState.load(tmp_path / "run")
    assert state.finished and state.epoch == 2 and result.metrics["epochs_run"] == 2
    assert (tmp_path / "run" / "model.keras").is_file() and "accuracy" in result.metrics


def test_search_with_a_device_times_feasibility_and_finalists_there(ssh_device, colours, tmp_path):
    space = write_space(tmp_path / "space.yaml", architectures={"tiny_cnn": {"img_sizes": [32]}}, epochs=2, finalists=1)
    result = run_search(colours, tmp_path / "out", max_latency_ms=500, space=space, device="device",
                        ssh_config=ssh_device.config, device_python=str(ssh_device.python), timing=FAST_TIMING,
                        optimize_options=FAST_OPTIMIZE, verbose=0)
    data = json.loads((tmp_path / "out" / "search.json").read_text())
    assert data["where"]["on"] == "device" and data["trials"][0]["where"]["on"] == "device"
    assert result.within_limits and result.chosen["where"]["on"] == "device"
    assert all(row["where"]["on"] == "device" for row in data["latency_check"])
    best = json.loads((tmp_path / "out" / "exports" / "best.json").read_text())
    assert best["search"]["latency_where"]["on"] == "device"


def test_the_search_report_shows_the_choice_the_trials_and_the_check(colour_search):
    from edgecls.html_report.search_page import build_search_report

    result, out = colour_search
    html = build_search_report(out).read_text()
    assert result.chosen["config"]["key"] in html and "data:image/png;base64," in html
    assert html.count("<tr") >= len(result.trials) + 3 and "simple_cnn-a0.25-32px" in html  # dropped, with its figures
    assert "Untrained against trained latency" in html and "src=\"http" not in html


# ------------------------------------------------------------------ several machines: one PostgreSQL study


def _joined(url: str) -> bool:
    import optuna

    try:
        study = optuna.load_study(study_name="edgecls-search", storage=url)
    except KeyError:
        return False
    return "search" in study.user_attrs


def test_workers_share_a_postgresql_study_and_a_killed_workers_trial_is_trained_again(postgres, colours, tmp_path,
                                                                                      monkeypatch):
    import threading

    import optuna

    monkeypatch.setenv("EDGECLS_SEARCH_HEARTBEAT_SECONDS", "1")  # a silent trial is a dead worker's after 3 s
    space = write_space(tmp_path / "space.yaml", architectures={"tiny_cnn": {"img_sizes": [32, 40, 48, 56]}},
                        epochs=8, min_epochs=8, finalists=1)
    url = postgres.url
    worker = [sys.executable, "-m", "edgecls", "search", str(colours), "--join", url, "--quiet", "--out"]
    started, killed = {}, {}

    def workers():  # the two other machines: join once the study is made; kill one mid-trial
        deadline = time.monotonic() + 120
        while not _joined(url):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for name in ("b", "c"):
            started[name] = subprocess.Popen(worker + [str(tmp_path / name)], cwd=REPO, env=dict(os.environ),
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        while time.monotonic() < deadline:
            states = list((tmp_path / "b" / "trials").glob("*/state.json"))
            if states and json.loads(states[0].read_text()).get("epoch", 0) >= 1:
                killed["folder"] = states[0].parent
                os.killpg(started["b"].pid, signal.SIGKILL)  # the worker and all it started, mid-trial
                return
            time.sleep(0.05)

    thread = threading.Thread(target=workers)
    thread.start()
    try:
        result = run_search(colours, tmp_path / "a", max_latency_ms=500, space=space, storage=url, time_budget=45,
                            timing=FAST_TIMING, optimize_options=FAST_OPTIMIZE, verbose=0)
    finally:
        thread.join(150)
        for process in started.values():
            if process.poll() is None:
                process.wait(120)
    assert killed, "worker b never got to train a trial"
    c_out, c_err = started["c"].communicate()
    assert started["c"].returncode == 0, c_err.decode()
    assert "trial(s) of the study at postgresql+psycopg2://…@127.0.0.1" in c_out.decode()  # the password never shown

    trials = optuna.load_study(study_name="edgecls-search", storage=url).get_trials()
    by_run = {t.user_attrs.get("run"): t for t in trials}
    dead = by_run[str(killed["folder"])]
    assert dead.state.name == "FAIL"  # failed as stale by the next worker to start a trial, and queued again
    pair = (dead.params["config"], dead.params["lr_scale"])
    ended = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED") and "duplicate_of" not in t.user_attrs]
    pairs = [(t.params["config"], t.params["lr_scale"]) for t in ended]
    assert len(pairs) == len(set(pairs))  # every configuration and rate trained once, over three workers
    again = [t for t in ended if (t.params["config"], t.params["lr_scale"]) == pair]
    assert len(again) == 1 and Path(again[0].user_attrs["run"]).parent.parent in (tmp_path / "a", tmp_path / "c")
    assert {Path(t.user_attrs["run"]).parent.parent.name for t in ended} == {"a", "c"}  # both survivors trained
    worker_c = json.loads((tmp_path / "c" / "worker.json").read_text())
    assert worker_c["trials"] and "password" not in json.dumps(worker_c)
    # the search that made the study chose among every trial it can read: here all of them
    assert result.within_limits and len(result.trials) == len(trials)
    assert json.loads((tmp_path / "a" / "search.json").read_text())["chosen"]["trial"] == result.chosen["trial"]


def test_join_needs_a_server_and_a_started_study(postgres, colours, tmp_path, capsys):
    import psycopg2

    from edgecls.cli import main

    connection = psycopg2.connect(host="127.0.0.1", port=postgres.port, user="edgecls", dbname="postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("CREATE DATABASE nothing_started")
    connection.close()
    for url, message in ((f"sqlite:///{tmp_path / 'x.db'}", "--join needs a database server"),
                         (postgres.url.replace("/postgres", "/nothing_started"), "no search study at postgresql+psycopg2://…@")):
        with pytest.raises(SystemExit) as exit_info:
            main(["search", str(colours), "--out", str(tmp_path / "w"), "--join", url])
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(lines) == 1 and message in lines[0], lines


def test_the_hyperband_pruner_stops_a_trial_below_its_rungs_cut(tmp_path):
    """A real study, pruner and training run: earlier trials that scored 0.99 at every epoch (told to the study
    through its own ask/report/tell, so the pruner holds their rung values) make the real trial fall below its
    bracket's cut, and Hyperband stops it at a rung before its last epoch."""
    from edgecls.architecture_search import study as studies
    from edgecls.architecture_search.trials import Objective
    from edgecls.searching.variant_search import Clock
    from edgecls.training.run_state import RunState

    noise = tmp_path / "noise"  # nothing to learn: the real trial stays near chance, far below 0.99
    rng = np.random.default_rng(1)
    for index in range(3):
        (noise / f"class{index}").mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(noise / f"class{index}" / f"{i}.png")
    space = build_space(write_space(tmp_path / "space.yaml", architectures={"tiny_cnn": {"img_sizes": [32]}}, epochs=9,
                                    min_epochs=1), image_side=24)
    key = space.configs[0].key
    storage = studies.make_storage(f"sqlite:///{tmp_path / 'study.db'}")
    study = studies.open_study(storage, space, [], resume=False, fingerprint="planted")
    for n in range(PLANTED):  # at other rates than the real trial's, which would otherwise be a repeat of one
        study.enqueue_trial({"config": key, "lr_scale": (0.5, 2.0)[n % 2]})
        planted = study.ask()
        planted.suggest_categorical("config", [key])
        planted.suggest_categorical("lr_scale", list(studies.LR_SCALES))
        for epoch in range(1, 10):
            planted.report(0.99, epoch)
            planted.should_prune()  # records the rung values the pruner compares later trials with
        study.tell(planted, 0.99)
    study.enqueue_trial({"config": key, "lr_scale": 1.0})
    objective = Objective(study, noise, space, [key], tmp_path, Clock(None), verbose=0)
    study.optimize(objective, n_trials=1, catch=(EdgeclsError,))
    trial = study.trials[-1]
    assert trial.state.name == "PRUNED", (trial.state, trial.user_attrs)
    epochs = int(trial.user_attrs["stopped"].split("pruned at epoch ")[1].split(":")[0])
    assert epochs < 9 and trial.user_attrs["epochs"] == epochs  # stopped early, at a rung
    assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))
    run = Path(trial.user_attrs["run"])
    state = RunState.load(run)
    assert state.finished and state.epoch == epochs and (run / "model.keras").is_file()
    assert trial.user_attrs["test_accuracy"] is not None  # finished like an early-stopped run, test reported


# Hyperband assigns a trial to a bracket by its number (brackets with rungs from epoch 1, 3 or only 9); with
# this many before it, the real trial lands in one with a rung before its last epoch.
PLANTED = 12
