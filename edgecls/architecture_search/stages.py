"""``edgecls search``: the most accurate model that meets the limits on the target, from a folder of images.

Four stages, each leaving its files in ``OUT``: the space (:mod:`.space`), feasibility on the
target before any training (:mod:`.feasibility`, ``feasibility.json``), the trials of an Optuna
study with a pruner over epochs (:mod:`.study`, :mod:`.trials`; ``study.db``, ``trials/``), and
the finalists through ``optimize`` (:mod:`.finalists`; ``exports/best.*``, ``pareto.png``).
``search.json`` holds every trial and candidate and is rewritten at the end of each stage. The
time budget covers this session's feasibility and training; the finalists' compression comes
after it and is reported apart (``seconds`` in search.json). Choosing reads validation figures only.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import numpy as np

from edgecls.architecture_search import feasibility as feas
from edgecls.architecture_search import finalists as final
from edgecls.architecture_search import study as studies
from edgecls.architecture_search.space import SearchSpace, build_space, image_side
from edgecls.architecture_search.trials import Objective, dataset_files, trial_records
from edgecls.errors import EdgeclsError
from edgecls.fsutil import check_writable_folder, write_json
from edgecls.results import SearchResult
from edgecls.searching.variant_search import Clock

SCHEMA = "edgecls.search/1"
SEARCH_JSON = "search.json"


def run_search(data, out, *, max_latency_ms: float | None = None, max_size_kb: float | None = None, device=None,
               threads: int = 1, as_fast_as=None, time_budget=None, space=None, storage: str | None = None,
               resume: bool = False,
               also_latency_ms=(), device_python: str = "python3", ssh_config=None, verbose: int = 1,
               timing: feas.TimingSettings | None = None, optimize_options: dict | None = None,
               seed: int = 0) -> SearchResult:
    """Search ``space`` (a YAML file, or None for the default) on ``data`` into ``out``; see :func:`edgecls.search`."""
    from edgecls.searching.variant_search import parse_duration

    given = _given_limits(max_latency_ms, max_size_kb, as_fast_as)
    extra = [_positive(v, "--also-latency-ms") for v in also_latency_ms]
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise EdgeclsError(f"--threads must be a whole number of at least 1, got {threads!r}")
    clock = Clock(parse_duration(time_budget))
    timing = timing or feas.TimingSettings(threads=threads)
    timing.threads = threads
    out = Path(out)
    url = studies.storage_url(out, storage)
    _check_out(out, url, resume)
    # An impossible space fails here, before any work; the defaults that depend on the images come after.
    files, base = dataset_files(data, build_space(space, image_side=None))
    searched = build_space(space, image_side=image_side(files))
    check_writable_folder(out, what="--out")
    say = (lambda text: print(text, file=sys.stderr)) if verbose else (lambda text: None)
    from edgecls import run_lock

    with run_lock.writing(out), contextlib.ExitStack() as stack:
        make_timer, where = _timers(stack, device, device_python, ssh_config, timing)
        images_at = _calibration_images(files, base)
        reference = _reference(out, as_fast_as, resume, make_timer, images_at)
        limits = given.at_most(reference and reference["latency_ms_start"])
        state = _State(out, limits, where, clock, searched)
        if resume:  # the budget is the whole search's: the sessions before this one spent part of it
            state.before, state.budget_spent = _earlier_seconds(out)
            clock.started -= state.budget_spent or 0.0
        state.reference = reference
        if not resume:  # from here on the folder holds a search, which --resume continues whenever it stops
            state.write([], [], [], status="checking feasibility", stop_reason="")
        say(f"search {files.root} → {out}: {len(searched.configs)} configurations ({searched.source} space), "
            f"{limits.text()}, {threads} thread(s), timed on {_where_text(where)}")
        largest = feas.Limits(max([limits.max_latency_ms, *extra]), limits.max_size_kb)
        state.feasibility = _feasibility(state, largest, timing, images_at, len(files.classes), make_timer, resume, verbose)
        feasible = feas.queue_order(state.feasibility)
        if not feasible:
            return state.conclude([], [], [], stop_reason="no configuration can meet the limits, untrained",
                                  closest=feas.closest(state.feasibility), extra=extra)
        study = _study(state, url, feasible, resume, seed, say, classes=files.classes)
        shared = not studies.is_sqlite(url)
        stop = _train(state, study, data, feasible, verbose, queued_only=clock.budget_seconds is None, shared=shared)
        if shared:  # other machines may still be training trials of this study
            from edgecls.architecture_search.workers import wait_for_workers

            wait_for_workers(study, say)
        trials = trial_records(study, {r["config"]["key"]: r for r in state.feasibility})
        state.write(trials, [], [], status="compressing finalists", stop_reason=stop)
        opts = dict(threads=threads, device=device, device_python=device_python, ssh_config=ssh_config,
                    verbose=verbose, optimize_options=optimize_options or {})
        chosen_from, candidates = final.compress_finalists(trials, searched.finalists, limits, say=say, **opts)
        other_limits = [limits.max_latency_ms / 2, *(v for v in extra if v < limits.max_latency_ms)]
        more, found = final.compress_for_limits(trials, candidates, other_limits, limits.max_size_kb, say=say, **opts)
        chosen_from, candidates = chosen_from + more, candidates + found
        reference_now = final.retime(candidates, make_timer=make_timer, images_at=images_at,
                                     reference=None if reference is None else Path(reference["path"]))
        if reference is not None and reference_now is not None:  # the limit and the candidates, timed side by side
            reference["latency_ms_final"] = reference_now
            state.limits = given.at_most(reference_now)
        check = final.latency_check(chosen_from, candidates, {r["config"]["key"]: r for r in state.feasibility},
                                    make_timer=make_timer, images_at=images_at)
        result = state.conclude(trials, candidates, check, stop_reason=stop, closest=None, extra=extra)
        if verbose:
            _print_outcome(result, check, say)
        return result


def _print_outcome(result: SearchResult, check: list[dict], say) -> None:
    from edgecls.architecture_search.trials import print_trials

    print_trials(result.trials, result.chosen)
    say(f"training stopped: {result.stop_reason}")
    for row in check:
        say(f"untrained vs trained latency, {row['config']} {row['format']}: {row['untrained_ms']:.3f} → "
            f"{row['trained_ms']:.3f} ms ({row['trained_vs_untrained']:.2f}×, "
            f"{'within' if row['within_10pct'] else 'NOT within'} 10 %)")
    for row in result.by_latency_limit:
        best = row["best"]
        say(f"best under {row['max_latency_ms']:g} ms: " + ("nothing" if best is None else
            f"{best['config']} {best['variant']} (val top-1 {best['val_accuracy']:.4f}, {best['latency_ms']:.3f} ms)"))


class _State:
    """What the search knows so far, and the files that say it."""

    def __init__(self, out: Path, limits: feas.Limits, where: dict, clock: Clock, space: SearchSpace):
        self.out, self.limits, self.where, self.clock, self.space = out, limits, where, clock, space
        self.reference: dict | None = None  # as_fast_as: the model whose latency is the limit
        self.feasibility: list[dict] = []
        self.seconds: dict[str, float] = {}  # this session's
        self.before: dict[str, float] = {}  # the sessions' before a --resume
        self.budget_spent: float | None = None  # the clock when training ended: what --resume counts as used
        self.started = time.monotonic()

    def write(self, trials, candidates, check, *, status: str, stop_reason: str, chosen=None, by_limit=()) -> None:
        write_json(self.out / SEARCH_JSON, {
            "schema": SCHEMA, "status": status, "limits": self.limits.to_dict(), "reference": self.reference,
            "where": self.where,
            "space": {"source": self.space.source, "configurations": len(self.space.configs), "epochs": self.space.epochs,
                      "min_epochs": self.space.min_epochs, "finalists": self.space.finalists},
            "time_budget_seconds": self.clock.budget_seconds, "budget_spent_seconds": self.budget_spent,
            "stop_reason": stop_reason,
            "seconds": self._seconds(),
            "feasible": sum(1 for r in self.feasibility if r["feasible"]),
            "dropped": sum(1 for r in self.feasibility if not r["feasible"]),
            "chosen": chosen, "by_latency_limit": list(by_limit), "latency_check": check, "trials": trials,
            "candidates": candidates,
            "rule": "highest validation top-1 among the finalists' variants that meet every limit on the target; "
                    "test top-1 reported, never used"})

    def _seconds(self) -> dict[str, float]:
        now = {**self.seconds, "total": time.monotonic() - self.started}
        return {k: round(self.before.get(k, 0.0) + now.get(k, 0.0), 1) for k in {**self.before, **now}}

    def conclude(self, trials, candidates, check, *, stop_reason: str, closest, extra) -> SearchResult:
        self.seconds["finalists"] = round(time.monotonic() - self.started - sum(self.seconds.values()), 1)
        chosen = final.choose(candidates, self.limits)
        if closest is None and chosen is None:
            closest = final.closest(candidates, self.limits)
        final.remove_stale_best(self.out)
        best = None
        if chosen is not None:
            why = (f"the highest validation top-1 ({chosen['val_accuracy']:.4f}) among the variants of the "
                   f"{len({c['trial'] for c in candidates})} finalist(s) that meet {self.limits.text()} "
                   f"(timed on {_where_text(chosen.get('where'))})")
            if self.reference is not None:
                why += f"; the latency limit is {Path(self.reference['path']).name}'s, timed in the same loop"
            best = final.publish_best(self.out, chosen, self.limits, why)
        latency_limits = sorted({self.limits.max_latency_ms / 2, self.limits.max_latency_ms, *extra})
        by_limit = final.by_latency_limit(candidates, latency_limits, self.limits.max_size_kb)
        final.plot_front(self.out / "pareto.png", trials, candidates, chosen, self.limits)
        self.write(trials, candidates, check, status="done", stop_reason=stop_reason, chosen=chosen, by_limit=by_limit)
        feasible = sum(1 for r in self.feasibility if r["feasible"])
        return SearchResult(self.out, chosen, best, chosen is not None, self.limits.to_dict(), closest, trials, candidates,
                            by_limit, stop_reason, round(time.monotonic() - self.started, 1), feasible,
                            len(self.feasibility) - feasible)


class _Given:
    """The limits as the user gave them: a latency in ms, a model to be as fast as (or both), a size."""

    def __init__(self, latency_ms: float | None, size_kb: float | None):
        self.latency_ms, self.size_kb = latency_ms, size_kb

    def at_most(self, reference_ms: float | None) -> feas.Limits:
        return feas.Limits(min(v for v in (self.latency_ms, reference_ms) if v is not None), self.size_kb)


def _given_limits(max_latency_ms, max_size_kb, as_fast_as) -> _Given:
    if max_latency_ms is None and as_fast_as is None:
        raise EdgeclsError("give --max-latency-ms (the latency limit on the target) or --as-fast-as MODEL (a model "
                           "file to be at least as fast as)")
    if as_fast_as is not None and not Path(as_fast_as).is_file():
        raise EdgeclsError(f"--as-fast-as: no model file at {as_fast_as}")
    return _Given(None if max_latency_ms is None else _positive(max_latency_ms, "--max-latency-ms"),
                  None if max_size_kb is None else _positive(max_size_kb, "--max-size-kb"))


def _reference(out: Path, as_fast_as, resume: bool, make_timer, images_at) -> dict | None:
    """The as_fast_as model and its latency on the target now (resuming: as the first session timed it, so the
    study's limits stay the ones it was made for)."""
    import json

    if as_fast_as is None:
        return None
    path = Path(as_fast_as).resolve()
    if resume and (out / SEARCH_JSON).is_file():
        earlier = (json.loads((out / SEARCH_JSON).read_text(encoding="utf-8")).get("reference") or {})
        if earlier.get("path") == str(path) and earlier.get("latency_ms_start"):
            return {"path": str(path), "latency_ms_start": earlier["latency_ms_start"]}
    from edgecls.errors import ModelFileError

    try:
        latency = final.time_reference(path, make_timer=make_timer, images_at=images_at)
    except ModelFileError as err:
        raise EdgeclsError(f"--as-fast-as {as_fast_as}: {err}") from None
    return {"path": str(path), "latency_ms_start": latency}


def _earlier_seconds(out: Path) -> tuple[dict[str, float], float | None]:
    """What search.json says the sessions so far spent on each stage, and of the time budget (when training ended;
    else their feasibility and training seconds): nothing if they left no record."""
    import json

    try:
        earlier = json.loads((out / SEARCH_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, None
    seconds = {k: float(v) for k, v in (earlier.get("seconds") or {}).items() if isinstance(v, (int, float))}
    spent = earlier.get("budget_spent_seconds")
    if not isinstance(spent, (int, float)):  # written before budget_spent_seconds was kept
        ran_out = str(earlier.get("stop_reason") or "").startswith("the time budget")
        spent = earlier.get("time_budget_seconds") if ran_out else None
        spent = spent or seconds.get("feasibility", 0.0) + seconds.get("training", 0.0)
    return seconds, float(spent)


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise EdgeclsError(f"{name} must be a number more than 0, got {value!r}")
    return float(value)


def _check_out(out: Path, url: str, resume: bool) -> None:
    held = (out / SEARCH_JSON).is_file() or (studies.is_sqlite(url) and (out / studies.DB_FILE).is_file())
    if resume and not held:
        raise EdgeclsError(f"nothing to resume: {out} holds no search (no {SEARCH_JSON} or {studies.DB_FILE})")
    if not resume and held:
        raise EdgeclsError(f"{out} already holds a search; use --resume to continue it or another --out")


def _calibration_images(files, base):
    """``images_at(size)``: a fixed sample of training images at that size, decoded once and cached."""
    from edgecls.data.decode import decode_split
    from edgecls.training.data_prep import cache_root

    paths, labels = files.splits["train"]
    pick = np.sort(np.random.default_rng(0).choice(len(paths), size=min(feas.BATCHNORM_IMAGES, len(paths)), replace=False))
    seen: dict[int, np.ndarray] = {}

    def images_at(size: int) -> np.ndarray:
        if size not in seen:
            seen[size] = decode_split([paths[i] for i in pick], [labels[i] for i in pick], size,
                                      cache_root=cache_root(base), progress=False).images
        return seen[size]

    return images_at


def _timers(stack: contextlib.ExitStack, device, python: str, ssh_config, timing: feas.TimingSettings):
    """``make_timer(images)`` for models of those images' size, here or on the device, and where that is."""
    from edgecls.searching.measurement import DeviceTimer, Timer

    settings = dict(threads=timing.threads, rounds=timing.rounds, runs=timing.runs, warmup=timing.warmup)
    if device is None:
        from edgecls.devices.machine_probe import host_where

        return (lambda images: Timer(images=images, **settings)), host_where()
    from edgecls.devices.readiness import require_tflite
    from edgecls.devices.session import Device

    session = stack.enter_context(Device(device, python=python, ssh_config=ssh_config))
    require_tflite(session.describe(), session.name, python)
    return (lambda images: DeviceTimer(session, images=images, **settings)), session.where()


def _feasibility(state: _State, limits: feas.Limits, timing, images_at, num_classes: int, make_timer, resume: bool,
                 verbose: int) -> list[dict]:
    started = time.monotonic()
    key = feas.fingerprint(state.space, limits, timing, state.where)
    records = feas.read_feasibility(state.out, key) if resume else None
    if resume and records is None and (state.out / feas.FILE).is_file():  # before minutes of checking, not after
        raise EdgeclsError("the search to resume was checked for other limits, space or target (see its "
                           f"{feas.FILE}); run it again with the same --space, limits and --also-latency-ms, "
                           "or start a new search in another --out")
    if records is None:
        records = feas.check_space(state.space, limits, images_at=images_at, num_classes=num_classes,
                                   make_timer=make_timer, out=state.out, verbose=verbose)
        feas.write_feasibility(state.out, records, {"fingerprint": key, "limits": limits.to_dict(), "where": state.where,
                                                    "threads": timing.threads})
    if verbose:
        feas.print_table(records, limits, state.where)
    state.seconds["feasibility"] = round(time.monotonic() - started, 1)
    state.feasibility = records
    return records


def _study(state: _State, url: str, feasible: list[str], resume: bool, seed: int, say, *, classes):
    from edgecls.architecture_search import workers

    storage = studies.make_storage(url)
    fingerprint = f"{state.space.fingerprint()}:{state.limits.to_dict()}:{feasible}"
    if resume and not studies.existing_study(storage):
        resume = False  # killed after feasibility, before the study was made: make it now
    study = studies.open_study(storage, state.space, feasible, resume=resume, fingerprint=fingerprint, seed=seed)
    if resume and studies.is_sqlite(url):
        again = studies.requeue_interrupted(study)
        if again:
            say(f"resuming: trial(s) {', '.join(map(str, again))} were interrupted and are queued again")
    left = state.clock.left()
    deadline = None if left == float("inf") else time.time() + left  # wall clock: workers on other machines share it
    study.set_user_attr(workers.SPEC_ATTR, workers.describe(state.space, state.limits.to_dict(), feasible, classes,
                                                            deadline))
    return study


def _train(state: _State, study, data, feasible: list[str], verbose: int, *, queued_only: bool, shared: bool) -> str:
    from optuna.trial import TrialState

    started = time.monotonic()
    objective = Objective(study, data, state.space, feasible, state.out, state.clock, verbose=verbose,
                          queued_only=queued_only)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    stop = None
    if state.clock.left() <= 0:
        stop = ("the time budget ran out before training" if not state.before else
                f"the time budget of {state.clock.budget_seconds:g} s was spent by the sessions before this --resume")
    elif queued_only and not waiting:
        stop = "every feasible configuration was trained once (give --time-budget to search further)"
    if stop is None:
        try:
            study.optimize(objective, callbacks=[objective.after_trial], catch=(EdgeclsError,))
        except KeyboardInterrupt:
            if shared:  # other workers go on: they get the interrupted trial now, not at this search's --resume
                from edgecls.architecture_search.workers import requeue_own

                requeue_own(study, state.out, lambda text: print(text, file=sys.stderr))
            trials = trial_records(study, {r["config"]["key"]: r for r in state.feasibility})
            state.write(trials, [], [], status="interrupted", stop_reason="interrupted (Ctrl-C)")
            print(f"\ninterrupted: the study is kept in {state.out}; run again with --resume to continue "
                  "(the interrupted trial is trained again)", file=sys.stderr)
            raise
        stop = objective.stop_reason or "the study ended"
    state.seconds["training"] = round(time.monotonic() - started, 1)
    state.budget_spent = round(state.clock.elapsed(), 1)
    return stop


def _where_text(where) -> str:
    from edgecls.devices.machine_probe import where_text

    return where_text(where)
