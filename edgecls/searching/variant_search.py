"""``edgecls optimize``: the fastest (or smallest) model within an accuracy budget.

The budget is an absolute drop in percentage points of top-1 on the **validation** split against
the run's float model (``max_drop=0.5``: at most half a point below it). Candidates are made
cheapest first (float32, float16, dynamic range, int8 with calibration variants and percentile
ranges, QAT, pruned int8 for the size objective, per-op float fallback as the last resort) and
each is measured on the validation split (chosen on) and the test split (reported only). The
search does not stop at the first candidate within budget: it stops when no remaining step can
beat the best found (candidates of one graph family share its latency), or when the time
budget runs out. Latency is timed in this one process, every candidate interleaved with the
others round by round, with the thread count asked for.

Everything lands in ``RUN/exports/optimize/``: the candidates with their sidecars,
``leaderboard.json`` and ``.csv`` (rewritten after every candidate, so an interrupted search
keeps what it measured and ``resume=True`` skips it), ``pareto.png``; the chosen model is copied
to ``RUN/exports/best.tflite`` (or ``best.onnx``) with ``best.json`` saying why it was chosen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecls import formats
from edgecls.converters.calibration import DEFAULT_CALIBRATION
from edgecls.devices.machine_probe import where_text
from edgecls.errors import DeviceError, EdgeclsError
from edgecls.metrics import top1_accuracy
from edgecls.results import OptimizeResult, latency_text
from edgecls.run_folder import RunFolder
from edgecls.searching import leaderboard as board
from edgecls.searching.measurement import DeviceTimer, Measurer, Timer, publish_best
from edgecls.training.fine_tune import DEFAULT_OPTIMIZER as DEFAULT_FINE_TUNE_OPTIMIZER
from edgecls.training.fine_tune import check_optimizer as check_fine_tune_optimizer

DEFAULT_ROUNDS, DEFAULT_RUNS, DEFAULT_WARMUP = 7, 40, 10
SCHEMA = "edgecls.optimize/1"


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")


def parse_duration(value) -> float | None:
    """Seconds from ``None``, a number of seconds, or text such as "90", "90s", "30m", "1h", "1h30m"."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise EdgeclsError(f"bad time budget {value!r}: give seconds or a duration like 90s, 30m, 1h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).lower())
        if not str(value).strip() or not match or not any(match.groups()):
            raise EdgeclsError(f"bad time budget '{value}': give seconds or a duration like 90s, 30m, 1h, 1h30m")
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if not np.isfinite(seconds) or seconds <= 0:
        raise EdgeclsError(f"bad time budget '{value}': it must be more than 0 seconds")
    return seconds


def check_arguments(max_drop, objective: str, runtime: str, threads) -> None:
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not np.isfinite(max_drop):
        raise EdgeclsError(f"--max-drop must be a number of percentage points, got {max_drop!r}")
    if max_drop < 0:
        raise EdgeclsError(f"--max-drop must be 0 or more (percentage points of top-1 below float), got {max_drop:g}")
    if objective not in board.OBJECTIVES:
        raise EdgeclsError(f"unknown objective '{objective}'; choose {' or '.join(board.OBJECTIVES)}")
    formats.check_choice(runtime, formats.search_names(), message="unknown runtime '{name}' for optimize")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise EdgeclsError(f"--threads must be a whole number of at least 1, got {threads!r}")


class SearchState:
    """What the candidates measured so far; the steps and the stop rule read it."""

    def __init__(self, ctx, *, max_drop: float, objective: str, float_val_probs: np.ndarray,
                 forbid_slow_int8: bool = True):
        self.ctx = ctx
        self.forbid_slow_int8 = forbid_slow_int8
        self.max_drop = max_drop
        self.objective = objective
        self.float_val_probs = float_val_probs
        self.records: list[dict] = []
        self.val_probs: dict[str, np.ndarray] = {}

    def last_within_budget(self) -> bool:
        return bool(self.records) and self.records[-1]["val_drop_pt"] <= self.max_drop + 1e-9

    def int8_val_probs(self, blob: bytes) -> np.ndarray:
        """Validation probabilities of the default int8 model (measured already, as a rule)."""
        if "int8" in self.val_probs:
            return self.val_probs["int8"]
        import tempfile

        from edgecls.deploy.runtimes import open_model

        with tempfile.TemporaryDirectory(prefix="edgecls-optimize-") as folder:
            path = Path(folder) / "int8.tflite"
            path.write_bytes(blob)
            return open_model(path, quiet=True).predict(self.ctx.val_images)

    def best(self) -> dict | None:
        records = [dict(r) for r in self.records]
        board.mark_budget(records, self.max_drop, forbid_slow_int8=self.forbid_slow_int8)
        return board.choose(records, self.objective)


def optimize_run(run, *, max_drop: float = 0.5, objective: str = "latency", runtime: str = "tflite",
                 time_budget=None, threads: int = 1, resume: bool = False, model=None, verbose: int = 1,
                 calibration: int = DEFAULT_CALIBRATION, qat_epochs: int = 1, prune_epochs: int = 1,
                 rounds: int = DEFAULT_ROUNDS, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
                 fine_tune_optimizer: str = DEFAULT_FINE_TUNE_OPTIMIZER, device=None, device_python: str = "python3",
                 ssh_config=None) -> OptimizeResult:
    """Search ``run``'s variants for the fastest (``objective="latency"``) or smallest (gzip,
    ``"size"``) model whose validation top-1 is at most ``max_drop`` percentage points (absolute)
    below the float model's. ``time_budget``: seconds or "30m"/"90s"/"1h"; ``resume``: reuse the
    candidates an earlier search of the same source model measured; ``model``: search from
    another Keras model of the run (e.g. exports/pruned.keras), still judged against the run's
    float model. ``rounds``/``runs``/``warmup`` set the interleaved latency measurement;
    ``fine_tune_optimizer`` is QAT's and pruning's (edgecls.training.fine_tune). ``device``
    (``ssh://[user@]host[:port]`` or an ssh alias): time every candidate there instead, through
    one connection, with ``device_python``; accuracy is still measured here, on the same bytes.
    A device lost mid-search raises :class:`edgecls.errors.DeviceError` after writing the
    leaderboard so far; ``resume=True`` goes on from it.
    """
    check_arguments(max_drop, objective, runtime, threads)
    if device is not None and runtime != "tflite":
        raise EdgeclsError(f"--device times .tflite candidates (pi_infer.py on the device); --runtime {runtime} "
                           "cannot run there")
    fine_tune_optimizer = check_fine_tune_optimizer(fine_tune_optimizer)
    clock = Clock(parse_duration(time_budget))
    if calibration < 1:
        raise EdgeclsError(f"calibration must be at least 1 image, got {calibration}")
    folder, ctx = _open_run(run, model)
    out_dir = folder.optimize
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = _reference(ctx, folder)
    float_val = top1_accuracy(ctx.val_labels, reference["val_probs"])
    float_test = top1_accuracy(ctx.test_labels, reference["test_probs"])
    source = {"model": str(ctx.model_path), "sha256": _sha256(ctx.model_path),
              "reference": str(folder.model)}
    meta = {"schema": SCHEMA, "run": str(folder.path.resolve()), "source": source, "runtime": runtime,
            "objective": objective, "max_drop_pt": float(max_drop),
            "budget": f"validation top-1 at most {max_drop:g} percentage points (absolute) below float",
            "float_val_accuracy": float_val, "float_test_accuracy": float_test,
            "val_images": int(len(ctx.val_labels)), "test_images": int(len(ctx.test_labels)),
            "threads": threads, "status": "searching"}
    with contextlib.ExitStack() as stack:
        timer = _timer(stack, device, device_python, ssh_config, threads=threads, rounds=rounds, runs=runs,
                       warmup=warmup, images=ctx.val_images)
        meta["where"] = timer.where
        return _search(folder, ctx, timer, meta, reference, runtime=runtime, objective=objective, max_drop=max_drop,
                       threads=threads, clock=clock, verbose=verbose, resume=resume, calibration=calibration,
                       qat_epochs=qat_epochs, prune_epochs=prune_epochs, fine_tune_optimizer=fine_tune_optimizer)


def _timer(stack: contextlib.ExitStack, device, python: str, ssh_config, **settings) -> Timer:
    """Where the candidates are timed: here, or on ``device`` through one connection held for the whole search."""
    if device is None:
        return Timer(**settings)
    from edgecls.devices.readiness import require_tflite
    from edgecls.devices.session import Device

    session = stack.enter_context(Device(device, python=python, ssh_config=ssh_config))
    require_tflite(session.describe(), session.name, python)
    return DeviceTimer(session, **settings)


def _search(folder: RunFolder, ctx, timer: Timer, meta: dict, reference: dict, *, runtime: str, objective: str,
            max_drop: float, threads: int, clock: Clock, verbose: int, resume: bool, calibration: int,
            qat_epochs: int, prune_epochs: int, fine_tune_optimizer: str) -> OptimizeResult:
    out_dir, source = folder.optimize, meta["source"]
    float_val, float_test = meta["float_val_accuracy"], meta["float_test_accuracy"]
    state = SearchState(ctx, max_drop=max_drop, objective=objective, float_val_probs=reference["val_probs"],
                        forbid_slow_int8=runtime == "onnx" or objective == "latency")
    say = _say if verbose else (lambda text: None)
    say(f"optimize {folder.path}: {runtime}, objective {objective}, budget −{max_drop:g} pt of validation top-1 "
        f"(float {float_val:.4f} on {len(ctx.val_labels)} images), {threads} thread(s), timed on {where_text(timer.where)}")

    steps = formats.load(formats.FORMATS[runtime].search_steps)(
        ctx, objective=objective, calibration=calibration, qat_epochs=qat_epochs, prune_epochs=prune_epochs,
        fine_tune_optimizer=fine_tune_optimizer)
    loop = _SearchLoop(state, Measurer(ctx, out_dir, timer, float_val=float_val, float_test=float_test, sha=source["sha256"]),
                       out_dir, meta, clock, say, previous=_previous_records(out_dir, source) if resume else {},
                       epoch_seconds=_epoch_seconds(folder))
    try:
        stop_reason = loop.run(steps, f"optimize ({runtime}, {objective})", progress=verbose > 0)
        timer.final(state.records, enabled=verbose > 0)
    except KeyboardInterrupt:
        meta["status"] = "interrupted"
        board.write_leaderboard(out_dir, state.records, meta)
        print(f"\ninterrupted: {len(state.records)} candidate(s) kept in {out_dir / 'leaderboard.json'}; "
              "run again with --resume to continue", file=sys.stderr)
        raise
    except DeviceError as err:
        untimed = getattr(err, "untimed_record", None)
        if untimed is not None:
            state.records.append(untimed)
        meta["status"] = "device lost"
        board.write_leaderboard(out_dir, state.records, meta)
        raise type(err)(f"{err}; {len(state.records)} candidate(s) kept in {out_dir / 'leaderboard.json'}: "
                        "run again with --resume to go on") from None
    title = f"{folder.path.name}: {runtime}, objective {objective}, timed on {timer.where['on']}"
    result = _conclude(folder, state, meta, stop_reason, clock, runtime=runtime, threads=threads, title=title)
    if verbose:
        board.print_leaderboard(state.records, float_val=float_val, max_drop=max_drop, objective=objective, title=title,
                                where=timer.where)
        say(f"stopped: {stop_reason}")
        say(result.summary_line())
    return result


def _open_run(run, model):
    """The run folder and its loaded context (``model``: another Keras model of the run to search from)."""
    folder = RunFolder(run)
    if not folder.path.is_dir() or not folder.is_run():
        raise EdgeclsError(f"not a run folder (no config.yaml): {folder.path}")
    from edgecls.training.run_context import load_run

    ctx = load_run(folder.path, model, verbose=0)
    if len(ctx.val_labels) == 0:
        raise EdgeclsError(f"{folder.path} has no validation split: the search chooses on validation data "
                           "(the test split is only reported); retrain with data.val_fraction > 0")
    return folder, ctx


@dataclasses.dataclass
class Clock:
    """A search's time budget (None: no limit), counted from its start (``edgecls search``'s trials use it too)."""

    budget_seconds: float | None
    started: float = dataclasses.field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def ran_out(self) -> bool:
        return self.budget_seconds is not None and self.elapsed() >= self.budget_seconds

    def left(self) -> float:
        """Seconds left of the budget (infinite without one; negative once overrun)."""
        return float("inf") if self.budget_seconds is None else self.budget_seconds - self.elapsed()


@dataclasses.dataclass
class _SearchLoop:
    """The steps in order: each is stopped at, skipped, or measured candidate by candidate, the
    leaderboard rewritten after every candidate so an interrupted search keeps what it measured."""

    state: SearchState
    measure: Measurer
    out_dir: Path
    meta: dict
    clock: Clock
    say: Callable[[str], None]
    previous: dict
    epoch_seconds: float | None
    bounded: list[str] = dataclasses.field(default_factory=list)  # skipped: cannot beat the best
    skipped: list[str] = dataclasses.field(default_factory=list)  # skipped: not enough time to fine-tune

    def run(self, steps: list, title: str, *, progress: bool) -> str:
        """Why the search stopped, once it has."""
        from edgecls.progress import progress_bar

        with progress_bar(title, len(steps), enabled=progress) as advance:
            for index, step in enumerate(steps):
                stop = self._why_stop(steps[index:])
                if stop:
                    return stop
                skip = self._why_skip(step)
                if skip:
                    self.say(f"  skip {step.name}: {skip}")
                else:
                    self._measure(step)
                advance()
        reason = f"every step was tried ({len(self.state.records)} candidates)"
        if self.skipped:
            reason += f"; skipped for lack of time: {', '.join(self.skipped)}"
        if self.bounded:
            reason += f"; skipped as unable to beat the best: {', '.join(self.bounded)}"
        return reason

    def _why_stop(self, rest: list) -> str | None:
        records, objective = self.state.records, self.state.objective
        if records and self.clock.ran_out():
            return (f"time budget of {_duration(self.clock.budget_seconds)} ran out after {len(records)} "
                    f"candidate(s); not tried: {', '.join(s.name for s in rest)}")
        best = self.state.best()
        if best is not None and not any(_can_beat(s, best, records, objective) for s in rest):
            return (f"no remaining step can beat the best so far, {best['variant']} ({_score_text(best, objective)}): "
                    f"{', '.join(s.name for s in rest)} cannot run faster or smaller than what their graph family measured")
        return None

    def _why_skip(self, step) -> str | None:
        best = self.state.best()
        if best is not None and not _can_beat(step, best, self.state.records, self.state.objective):
            self.bounded.append(step.name)
            return f"cannot beat {best['variant']} ({_score_text(best, self.state.objective)})"
        if step.trains and self.clock.budget_seconds is not None and self.epoch_seconds:
            needed = step.trains * self.epoch_seconds
            left = self.clock.budget_seconds - self.clock.elapsed()
            if needed > left:
                self.skipped.append(step.name)
                return f"needs ~{needed:.0f} s of fine-tuning, {left:.0f} s left"
        return None

    def _measure(self, step) -> None:
        state = self.state
        for candidate in step.candidates(state):
            record = self.measure(candidate, self.previous.get(candidate.variant), state)
            state.records.append(record)
            board.mark_budget(state.records, state.max_drop, forbid_slow_int8=state.forbid_slow_int8)
            board.write_leaderboard(self.out_dir, state.records, self.meta)
            best = state.best()
            self.say(f"  {record['variant']}: val {record['val_accuracy']:.4f} ({0.0 - record['val_drop_pt']:+.2f} pt), "
                     f"{latency_text(record['latency_ms'])}, {record['gzip_bytes'] / 1024:,.1f} KB gzip"
                     f"{' (resumed)' if record.get('resumed') else ''}; best so far: "
                     f"{best['variant'] if best else 'none within budget'}")
            if self.clock.ran_out():
                break


def _conclude(folder: RunFolder, state: SearchState, meta: dict, stop_reason: str, clock: Clock, *, runtime: str,
              threads: int, title: str) -> OptimizeResult:
    """Choose among the measured candidates, write the final leaderboard and the Pareto plot, publish the choice."""
    records, objective, max_drop = state.records, state.objective, state.max_drop
    float_val = meta["float_val_accuracy"]
    board.mark_budget(records, max_drop, forbid_slow_int8=state.forbid_slow_int8)
    chosen = board.choose(records, objective)
    for record in records:
        record["chosen"] = record is chosen
    meta.update(status="done", stop_reason=stop_reason, search_seconds=round(clock.elapsed(), 1),
                chosen=chosen["variant"] if chosen else None, within_budget=chosen is not None)
    board.write_leaderboard(folder.optimize, records, meta)
    board.plot_pareto(folder.optimize / "pareto.png", records, float_val=float_val, max_drop=max_drop,
                      title=title)
    best_path = publish_best(folder, chosen, runtime, objective=objective, max_drop=max_drop, float_val=float_val,
                              threads=threads, where=meta.get("where"))
    return OptimizeResult(folder.optimize, records, chosen, best_path, chosen is not None, stop_reason,
                          round(clock.elapsed(), 1), float(max_drop), objective, float_val, board.closest(records))


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _score_text(record: dict, objective: str) -> str:
    return latency_text(record.get("latency_ms")) if objective == "latency" else f"{record['gzip_bytes'] / 1024:,.1f} KB gzip"


def _can_beat(step, best: dict | None, records: list[dict], objective: str) -> bool:
    """False when the families bounding this step measured no better score than the best within budget.

    Compared with the lowest score within budget (not the chosen one, which may be up to a
    latency tie slower for being more accurate): a step that cannot reach below it cannot win.
    """
    if best is None or not step.bounded_by:
        return True
    bounds = [board.score(r, objective) for r in records if r["family"] in step.bounded_by]
    bounds = [b for b in bounds if np.isfinite(b)]
    within = [board.score(r, objective) for r in records if r.get("within_budget")]
    return not bounds or not within or min(bounds) < min(within)


def _reference(ctx, folder: RunFolder) -> dict:
    """The run's float Keras model on validation and test: what every drop is measured against."""
    from edgecls.training.pipeline import predict_probs

    model = ctx.model
    if Path(ctx.model_path).resolve() != folder.model.resolve():
        from edgecls.models.model_files import load_keras_model

        if not folder.model.is_file():
            raise EdgeclsError(f"no {folder.model.name} in {folder.path}: the float model is the reference")
        model = load_keras_model(folder.model)
    return {"val_probs": predict_probs(model, ctx.val_images), "test_probs": predict_probs(model, ctx.test_images)}


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _previous_records(out_dir: Path, source: dict) -> dict[str, dict]:
    """Records of an earlier search of the same source model (by content hash) whose files remain."""
    path = out_dir / "leaderboard.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    if data.get("source", {}).get("sha256") != source["sha256"]:
        return {}
    kept = {}
    for record in data.get("candidates", []):
        file = Path(record.get("path", ""))
        if file.is_file() and file.stat().st_size == record.get("size_bytes"):
            kept[record["variant"]] = record
    return kept


def _epoch_seconds(folder: RunFolder) -> float | None:
    """Mean training epoch time from history.csv: what one epoch of fine-tuning will roughly cost."""
    import csv

    if not folder.history.is_file():
        return None
    with open(folder.history, newline="", encoding="utf-8") as handle:
        times = [float(row["epoch_seconds"]) for row in csv.DictReader(handle) if row.get("epoch_seconds")]
    return float(np.mean(times)) if times else None
