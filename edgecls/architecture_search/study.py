"""The Optuna study behind ``edgecls search``: its storage, sampler, pruner, and what resuming means.

The study lives in ``OUT/study.db`` (SQLite) unless ``--storage`` names another database. Its
trials choose a feasible configuration (``config``) and a learning-rate multiplier of the
recipe's rate (``lr_scale``); every feasible configuration is queued first at the recipe's own
rate (in :func:`~edgecls.architecture_search.feasibility.queue_order`: one architecture after another, each
from its fastest up), so each is tried once before the TPE sampler proposes others. The Hyperband pruner stops
a trial at an epoch rung where its validation top-1 is among the worse of its bracket
(successive halving over epochs, from the space's ``min_epochs`` to its ``epochs``).

Resuming a SQLite study: this process holds ``OUT``'s lock, so a trial still marked running was
killed with its process. It is marked failed and queued again with its parameters (Optuna's
:class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`), as is a trial ended by Ctrl-C; a
trial that failed with a user error (a one-line ``EdgeclsError``) is not run again.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgecls.architecture_search.space import SearchSpace
from edgecls.errors import EdgeclsError

STUDY_NAME = "edgecls-search"
DB_FILE = "study.db"
LR_SCALES = (1.0, 0.5, 2.0)
# A running trial beats every HEARTBEAT seconds; one silent for GRACE is a dead worker's, retried.
# EDGECLS_SEARCH_HEARTBEAT_SECONDS shortens both (GRACE = 3 beats), for tests and quick local studies.
HEARTBEAT_SECONDS = 60
ERROR_ATTR = "error"  # set on a trial that failed with a user error: never retried


def _optuna():
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # edgecls prints its own line per trial
    # Heartbeats and the retry callback are "experimental" since Optuna 2.8; edgecls pins the range it is tested with.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def storage_url(out: Path, storage: str | None) -> str:
    return storage or f"sqlite:///{(Path(out) / DB_FILE).resolve()}"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def make_storage(url: str):
    optuna = _optuna()
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    engine = {"connect_args": {"timeout": 60}} if is_sqlite(url) else {"pool_pre_ping": True}
    beat = heartbeat_seconds()
    try:
        return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=beat, grace_period=3 * beat,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
    except (optuna.exceptions.StorageInternalError, ImportError, ValueError) as err:
        from edgecls.errors import first_line

        raise EdgeclsError(f"cannot open the study storage {shown(url)}: {first_line(err)}") from None
    except Exception as err:  # noqa: BLE001 - SQLAlchemy's errors for a bad URL or an unreachable server
        from edgecls.errors import first_line

        raise EdgeclsError(f"cannot open the study storage {shown(url)}: {first_line(err)}") from None


def heartbeat_seconds() -> int:
    text = os.environ.get("EDGECLS_SEARCH_HEARTBEAT_SECONDS", "")
    try:
        return max(1, int(text)) if text else HEARTBEAT_SECONDS
    except ValueError:
        raise EdgeclsError(f"EDGECLS_SEARCH_HEARTBEAT_SECONDS must be a whole number of seconds, got {text!r}") from None


def shown(url: str) -> str:
    # Never print a password that sits in a database URL.
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.rsplit('@', 1)[1]}"
    return url


def existing_study(storage) -> bool:
    return any(s.study_name == STUDY_NAME for s in storage.get_all_studies())


def _sampler_and_pruner(space: SearchSpace, seed: int | None):
    optuna = _optuna()
    pruner = optuna.pruners.HyperbandPruner(min_resource=space.min_epochs, max_resource=space.epochs,
                                            reduction_factor=3)
    return optuna.samplers.TPESampler(seed=seed), pruner


def load(storage, space: SearchSpace | None, *, seed: int | None = None):
    """The existing study, with the sampler and pruner ``space`` implies (None: only to read its attributes).
    Workers sample with their own seeds (None), so two never propose the same trial in step."""
    optuna = _optuna()
    sampler, pruner = _sampler_and_pruner(space, seed) if space is not None else (None, None)
    return optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, pruner=pruner)


def open_study(storage, space: SearchSpace, feasible: list[str], *, resume: bool, fingerprint: str, seed: int = 0):
    """The study: created (and every feasible configuration queued), or, with ``resume``, loaded
    after checking it was made for this space and these limits, its interrupted trials queued again."""
    optuna = _optuna()
    sampler, pruner = _sampler_and_pruner(space, seed)
    if resume:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, pruner=pruner)
        made_for = study.user_attrs.get("fingerprint")
        if made_for != fingerprint:
            raise EdgeclsError("the study to resume was made for another space, limits or target; run it again with "
                               "the same --space and limits, or start a new search in another --out")
        return study
    if existing_study(storage):  # another database than OUT/study.db (--storage) may hold one already
        raise EdgeclsError(f"the study storage already holds a study '{STUDY_NAME}'; use --resume to continue it, "
                           "or another --storage")
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, pruner=pruner,
                                direction="maximize")
    study.set_user_attr("fingerprint", fingerprint)
    for key in feasible:
        study.enqueue_trial({"config": key, "lr_scale": LR_SCALES[0]})
    return study


def requeue_interrupted(study, *, only=None) -> list[int]:
    """Mark trials left running by a killed process failed, and queue every interrupted trial again;
    returns their numbers. Only for a study no other process works on (SQLite under OUT's lock), unless
    ``only`` (a trial -> bool) picks this process's own trials, as after Ctrl-C in a shared study."""
    optuna = _optuna()
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    retry = RetryHeartbeatStaleTrialCallback()
    trials = study.get_trials(deepcopy=False)
    retried = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials}
    retried |= {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
    queued = []
    for trial in trials:
        if only is not None and not only(trial):
            continue
        if trial.state == TrialState.RUNNING:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # noqa: SLF001
        elif trial.state != TrialState.FAIL or ERROR_ATTR in trial.user_attrs or trial.number in retried:
            continue
        frozen = study._storage.get_trial(trial._trial_id)  # noqa: SLF001
        retry(study, frozen)
        queued.append(trial.number)
    del optuna
    return queued


def tried_pairs(study, *, besides: int | None = None) -> set[tuple[str, float]]:
    """(config, lr_scale) of every trial that trained to an end (complete, or pruned after training), failed
    with a user error, or is being trained now by another worker: what is never trained again. Of two workers that drew the same
    pair at once, the earlier trial (below ``besides``, the one asking) trains it."""
    from optuna.trial import TrialState

    ended = (TrialState.COMPLETE, TrialState.PRUNED)
    return {(t.params["config"], float(t.params["lr_scale"])) for t in study.get_trials(deepcopy=False)
            if "config" in t.params and "lr_scale" in t.params and "duplicate_of" not in t.user_attrs
            and (t.state in ended or ERROR_ATTR in t.user_attrs or (t.state == TrialState.RUNNING and (besides is None or t.number < besides)))}
