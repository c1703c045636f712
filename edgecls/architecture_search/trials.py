"""One trial of the search: an ordinary edgecls training run under ``OUT/trials/``, reported epoch by epoch.

Each trial trains its configuration with edgecls' own trainer into ``OUT/trials/NNNN-<config>``,
so ``evaluate``, ``optimize``, ``bench``, ``report`` and ``train --resume`` work on it as on any
run. After every epoch (once the epoch is saved) its validation top-1 goes to the study; the
pruner may stop it there, and so may the time budget when the next epoch would not end in time.
A stopped trial is finished like an early-stopped run: its best epoch's weights become
``model.keras`` and its test top-1 is measured (and only reported).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from edgecls.architecture_search import study as studies
from edgecls.architecture_search.space import Config, SearchSpace
from edgecls.errors import EdgeclsError
from edgecls.searching.variant_search import Clock

TRIALS = "trials"
DUPLICATES_IN_A_ROW = 20  # the sampler proposing only what was trained: the space is used up


def base_config(data, space: SearchSpace):
    """What every trial shares: the recipe defaults with the space's options, on ``data``."""
    from edgecls import config as cfg

    run_config = cfg.from_dict(json.loads(json.dumps(space.overrides)), source=f"--space {space.source}")
    run_config.data.path = str(data)
    return run_config


def dataset_files(data, space: SearchSpace):
    """The dataset's files and the recipe the trials share (its data options: fractions, seed, cache)."""
    from edgecls.data.layout import find_dataset
    from edgecls.training.data_prep import cache_root

    if data is None:
        raise EdgeclsError("give the DATA folder or archive to search on")
    base = base_config(data, space)
    d = base.data
    fractions = {"train": 1.0 - d.val_fraction - d.test_fraction, "val": d.val_fraction, "test": d.test_fraction}
    files = find_dataset(d.path, fractions=fractions, seed=d.seed, cache_root=cache_root(base))
    if not files.splits["val"][0]:
        raise EdgeclsError(f"{data} has no validation split: the search chooses on validation data (data.val_fraction > 0, "
                           "or a val/ folder)")
    return files, base


def trial_config(data, config: Config, space: SearchSpace, lr_scale: float):
    """The RunConfig a trial trains: :func:`base_config` with the configuration and the learning-rate multiplier."""
    run_config = base_config(data, space)
    run_config.data.img_size = config.img_size
    run_config.model.arch, run_config.model.alpha, run_config.model.weights = config.arch, config.alpha, config.weights
    run_config.train.epochs = space.epochs
    run_config.train.lr *= lr_scale
    run_config.train.fine_tune_lr *= lr_scale
    return run_config


def epoch_reporter(trial, clock: Clock):
    """A Keras callback that reports each epoch's validation top-1 to the trial and stops the whole run when
    the pruner says so or the next epoch would overrun the time budget."""
    from edgecls.tf import keras

    class EpochReporter(keras.callbacks.Callback):
        ends_run = False

        def __init__(self):
            super().__init__()
            self.epochs, self.stopped, self.longest = 0, None, 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.monotonic() - self.began
            self.longest = max(self.longest, seconds)
            self.epochs = epoch + 1
            value = (logs or {}).get("val_accuracy")
            if value is None:
                raise EdgeclsError("the search chooses on the validation split, and this dataset has none "
                                   "(data.val_fraction is 0 and there is no val/ folder)")
            trial.report(float(value), self.epochs)
            if trial.should_prune():
                self.stopped = f"pruned at epoch {self.epochs}: val top-1 {float(value):.4f} was below its rung's cut"
            elif clock.left() < seconds:
                self.stopped = f"time budget: another epoch (~{seconds:.0f} s) would not end in time"
            if self.stopped:
                self.ends_run = True
                self.model.stop_training = True

    return EpochReporter()


class Objective:
    """What the study calls per trial: train the sampled configuration, return its best validation top-1."""

    def __init__(self, study, data, space: SearchSpace, feasible: list[str], out: Path, clock: Clock, *,
                 verbose: int = 1, queued_only: bool = False):
        self.study, self.data, self.space, self.out, self.clock = study, data, space, Path(out), clock
        self.feasible, self.verbose, self.queued_only = feasible, verbose, queued_only
        self.duplicates = 0
        self.shortest_epoch: float | None = None
        self.stop_reason: str | None = None

    def __call__(self, trial) -> float:
        import optuna

        key = trial.suggest_categorical("config", self.feasible)
        scale = float(trial.suggest_categorical("lr_scale", studies.LR_SCALES))
        if (key, scale) in studies.tried_pairs(self.study, besides=trial.number):
            self.duplicates += 1
            trial.set_user_attr("duplicate_of", f"{key} at lr ×{scale:g}, tried already")
            raise optuna.TrialPruned()
        self.duplicates = 0
        config = self.space.by_key()[key]
        folder = self.out / TRIALS / (f"{trial.number:04d}-{key}" + ("" if scale == 1.0 else f"-lr{scale:g}"))
        trial.set_user_attr("run", str(folder))
        self._say(f"trial {trial.number}: {key}, lr ×{scale:g} → {folder}")
        reporter = epoch_reporter(trial, self.clock)
        from edgecls.training.trainer import train

        try:
            result = train(trial_config(self.data, config, self.space, scale), folder, verbose=0, callbacks=[reporter])
        except EdgeclsError as err:
            trial.set_user_attr(studies.ERROR_ATTR, str(err))
            self._say(f"trial {trial.number}: failed: {err}")
            raise
        if reporter.longest:  # the cheapest trial's longest epoch: less time than this left cannot hold another
            self.shortest_epoch = min(s for s in (self.shortest_epoch, reporter.longest) if s)
        from edgecls.training.run_state import RunState

        state = RunState.load(folder)
        value = float(state.best_value)
        trial.set_user_attr("val_accuracy", value)  # the best epoch's, which model.keras holds
        trial.set_user_attr("epochs", int(state.epoch))
        trial.set_user_attr("best_epoch", state.best_epoch)
        trial.set_user_attr("test_accuracy", result.metrics.get("accuracy"))  # reported, never chosen on
        trial.set_user_attr("train_seconds", result.train_seconds)
        if reporter.stopped:
            trial.set_user_attr("stopped", reporter.stopped)
        self._say(f"trial {trial.number}: val top-1 {value:.4f} after {state.epoch} epoch(s)"
                  + (f"; {reporter.stopped}" if reporter.stopped else ""))
        if reporter.stopped and reporter.stopped.startswith("pruned"):
            raise optuna.TrialPruned(reporter.stopped)
        return value

    def after_trial(self, study, frozen) -> None:
        """Optuna's per-trial callback: stop when the budget cannot hold another epoch, or nothing is left."""
        from optuna.trial import TrialState

        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if frozen.user_attrs.get("stopped", "").startswith("time budget") or self.clock.left() <= 0:
            self.stop_reason = f"the time budget of {self.clock.budget_seconds:g} s ran out"
        elif self.shortest_epoch is not None and self.clock.left() < self.shortest_epoch:
            self.stop_reason = (f"{self.clock.left():.0f} s left of the time budget, less than the shortest epoch "
                                f"({self.shortest_epoch:.0f} s)")
        elif self.queued_only and not waiting:
            self.stop_reason = "every feasible configuration was trained once (give --time-budget to search further)"
        elif len(studies.tried_pairs(study)) >= len(self.feasible) * len(studies.LR_SCALES):
            self.stop_reason = "every feasible configuration was tried at every learning rate"
        elif self.duplicates >= DUPLICATES_IN_A_ROW:
            self.stop_reason = f"the sampler proposed {self.duplicates} trained configurations in a row"
        if self.stop_reason:
            study.stop()

    def _say(self, text: str) -> None:
        if self.verbose:
            print(text, file=sys.stderr)


def trial_records(study, feasibility: dict[str, dict]) -> list[dict]:
    """Every trial as search.json holds it: configuration, epochs, val/test top-1, untrained latency and size
    per format and where timed, pruned or not and why."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

    records = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        params = t.params or t.system_attrs.get("fixed_params", {})  # a queued trial holds its parameters there
        key = params.get("config")
        measured = feasibility.get(key, {})
        pruned = t.state.name == "PRUNED"
        records.append({
            # a proposal of what was tried already is told to Optuna as pruned, untrained: shown as what it is
            "number": t.number, "state": "duplicate" if "duplicate_of" in attrs else t.state.name.lower(),
            "config": measured.get("config", {"key": key}),
            "lr_scale": params.get("lr_scale"), "run": attrs.get("run"), "epochs": attrs.get("epochs"),
            "best_epoch": attrs.get("best_epoch"),
            "val_accuracy": attrs.get("val_accuracy"),
            "test_accuracy": attrs.get("test_accuracy"), "train_seconds": attrs.get("train_seconds"),
            "pruned": pruned and "duplicate_of" not in attrs,
            "why": attrs.get("stopped") or attrs.get("duplicate_of") or attrs.get(studies.ERROR_ATTR)
                   or ("interrupted: queued again" if t.state.name == "FAIL" else None),
            "retry_of": Retry.retried_trial_number(t),
            "untrained": {fmt: {k: f.get(k) for k in ("latency_ms", "size_bytes")} for fmt, f in
                          measured.get("formats", {}).items()},
            "where": measured.get("where"),
        })
    return records


def print_trials(trials: list[dict], chosen: dict | None) -> None:
    """Every trial as a rich table on stderr (stdout stays clean for --json), the chosen one starred."""
    from rich.console import Console
    from rich.table import Table

    table = Table("", "trial", "configuration", "lr", "state", "epochs", "val top-1", "test top-1", "int8 untrained",
                  "why", title="edgecls search: trials", caption="chosen on validation; test top-1 reported only")
    for t in trials:
        mark = "★" if chosen is not None and chosen["trial"] == t["number"] else ""
        int8 = (t.get("untrained") or {}).get("int8", {}).get("latency_ms")
        table.add_row(mark, str(t["number"]), t["config"].get("key") or "", f"×{t['lr_scale']:g}" if t["lr_scale"] else "",
                      t["state"], "" if t["epochs"] is None else str(t["epochs"]),
                      "" if t["val_accuracy"] is None else f"{t['val_accuracy']:.4f}",
                      "" if t["test_accuracy"] is None else f"{t['test_accuracy']:.4f}",
                      "" if int8 is None else f"{int8:.3f} ms", t["why"] or "")
    Console(stderr=True, width=None if sys.stderr.isatty() else 160).print(table)
