"""Several machines on one search: the study in a shared database, ``edgecls search --join URL`` on each.

The search that creates the study (``--storage URL``) checks feasibility, queues the feasible
configurations, and writes into the study what a worker needs to train them: the space, the
limits, the dataset's classes and the time budget's end (a wall-clock time, so workers started
later stop with it). A worker (:func:`join_search`) reads that, checks its own copy of the data
has the same classes, and trains trials into its own ``--out``: the sampler, the pruner and the
queue are the study's, so each trial is claimed by one worker. Every running trial beats a
heartbeat into the database; a worker that dies mid-trial stops beating, and the next worker to
start a trial marks it failed and queues it again (Optuna's stale-trial retry), so another worker
trains it. When its own training ends, the creator waits for the trials other workers are still
training, then compresses the finalists: the trials whose run folders it can read (one shared
``--out`` folder, or a shared disk, makes that every trial).
"""

from __future__ import annotations

import dataclasses
import socket
import sys
import time
from pathlib import Path

from edgecls.architecture_search import study as studies
from edgecls.architecture_search.space import Config, SearchSpace
from edgecls.errors import EdgeclsError
from edgecls.results import SearchWorkerResult
from edgecls.searching.variant_search import Clock

SPEC_ATTR = "search"
POLL_SECONDS = 2.0


def describe(space: SearchSpace, limits: dict, feasible: list[str], classes: list[str], deadline: float | None) -> dict:
    """What the study holds for its workers (a study user attribute: JSON)."""
    return {"configs": [dataclasses.asdict(c) for c in space.configs], "epochs": space.epochs,
            "min_epochs": space.min_epochs, "finalists": space.finalists, "overrides": space.overrides,
            "source": space.source, "limits": limits, "feasible": feasible, "classes": list(classes),
            "deadline": deadline, "started_by": socket.gethostname()}


def space_of(spec: dict) -> SearchSpace:
    return SearchSpace([Config(**c) for c in spec["configs"]], spec["epochs"], spec["min_epochs"], spec["finalists"],
                       spec["overrides"], spec["source"])


def clock_for(spec: dict, time_budget: float | None) -> Clock:
    """The worker's budget: what is left of the study's (its deadline), or the worker's own if that ends sooner."""
    left = [s for s in (time_budget, None if spec.get("deadline") is None else spec["deadline"] - time.time())
            if s is not None]
    return Clock(max(0.0, min(left)) if left else None)


def wait_for_workers(study, say) -> None:
    """Until no trial is running: another worker's trial is waited for while it beats its heartbeat,
    and a dead worker's is failed (and queued again) once its heartbeat is stale."""
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    told = False
    while True:
        fail_stale_trials(study)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        if not told:
            say(f"waiting for {len(running)} trial(s) other workers are training: "
                + ", ".join(f"{t.number} ({t.params.get('config')})" for t in running))
            told = True
        time.sleep(POLL_SECONDS)


def join_search(data, out, url: str, *, time_budget=None, verbose: int = 1) -> SearchWorkerResult:
    """Train trials of the study at ``url`` (started by ``edgecls search --storage URL``) into ``out``."""
    from edgecls import run_lock
    from edgecls.architecture_search.trials import Objective, trial_records
    from edgecls.fsutil import check_writable_folder, write_json
    from edgecls.searching.variant_search import parse_duration

    started = time.monotonic()
    if studies.is_sqlite(url):
        raise EdgeclsError("--join needs a database server (postgresql://...) that every worker can reach; "
                           "a SQLite file is for one machine's search")
    storage = studies.make_storage(url)
    if not studies.existing_study(storage):
        raise EdgeclsError(f"no search study at {studies.shown(url)}: start one with "
                           f"`edgecls search DATA --out OUT --storage URL ...`, then --join it")
    study = studies.load(storage, None)
    spec = study.user_attrs.get(SPEC_ATTR)
    if not spec:
        raise EdgeclsError(f"the study at {studies.shown(url)} is not ready to join yet (its feasibility check is running); "
                           "try again in a minute")
    space = space_of(spec)
    study = studies.load(storage, space)
    _check_data(data, space, spec["classes"])
    out = Path(out)
    check_writable_folder(out, what="--out")
    say = (lambda text: print(text, file=sys.stderr)) if verbose else (lambda text: None)
    clock = clock_for(spec, parse_duration(time_budget))
    queued_only = clock.budget_seconds is None
    with run_lock.writing(out):
        say(f"joined the study at {studies.shown(url)} (started on {spec.get('started_by')}): "
            f"{len(spec['feasible'])} feasible configurations, "
            + ("no time budget: the queued trials" if queued_only else f"{clock.left():.0f} s of budget left"))
        objective = Objective(study, data, space, spec["feasible"], out, clock, verbose=verbose,
                              queued_only=queued_only)
        if clock.left() <= 0:
            stop = "the study's time budget had ended"
        else:
            try:
                study.optimize(objective, callbacks=[objective.after_trial], catch=(EdgeclsError,))
            except KeyboardInterrupt:
                requeue_own(study, out, say)
                raise
            stop = objective.stop_reason or "the study ended"
        trials = trial_records(study, {})
        result = SearchWorkerResult(out, studies.shown(url), trials, stop, round(time.monotonic() - started, 1))
        write_json(out / "worker.json", {"schema": "edgecls.search-worker/1", **result.to_dict()})
    return result


def requeue_own(study, out: Path, say) -> None:
    """After Ctrl-C in a shared study: this process's interrupted trial goes back in the queue for any worker
    (a killed process's is retried once its heartbeat is stale; an interrupted one does not wait for that)."""
    trials = Path(out) / "trials"
    again = studies.requeue_interrupted(study, only=lambda t: Path(t.user_attrs.get("run", "/")).parent == trials)
    if again:
        say(f"interrupted: trial(s) {', '.join(map(str, again))} queued again for the other workers")


def _check_data(data, space: SearchSpace, classes: list[str]) -> None:
    from edgecls.architecture_search.trials import dataset_files

    files, _ = dataset_files(data, space)
    if list(files.classes) != list(classes):
        raise EdgeclsError(f"{data} has classes {', '.join(files.classes)}, but the study searches "
                           f"{', '.join(classes)}: join with the same dataset")
