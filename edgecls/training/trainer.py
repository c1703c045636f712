"""Training a run: data → model → one or two phases → best model → evaluation, resumable."""

from __future__ import annotations

import contextlib
import dataclasses
import random
import shutil
import sys
from pathlib import Path

import numpy as np

from edgecls import run_lock
from edgecls.config import RunConfig, load_run_config
from edgecls.errors import EdgeclsError
from edgecls.fsutil import write_json, write_text
from edgecls.models import get_model_spec, modeling
from edgecls.models.model_files import load_keras_model
from edgecls.results import TrainResult
from edgecls.run_folder import CONFIG, HISTORY, MODEL, STATE, RunFolder
from edgecls.sidecar import check_outputs_match_labels
from edgecls.tf import keras, tf
from edgecls.training.callbacks import (
    BEST_WEIGHTS,
    ResourceMonitor,
    RunCheckpointer,
    save_inference_model,
    tensorboard_callbacks,
)
from edgecls.training.data_prep import PreparedData, prepare_data
from edgecls.training.distribute import (
    Distribution,
    adopt_chief_files,
    make_distribution,
    precision_policy,
    writable_run_dir,
    writes_run_folder,
)
from edgecls.training.fine_tune import compile_for_fine_tuning, fine_tune
from edgecls.training.lookahead import Lookahead
from edgecls.training.pipeline import check_augment_options, make_dataset, steps_per_epoch
from edgecls.training.run_state import RunState
from edgecls.training.schedules import WarmupCosine, check_optimizer_options, head_epochs

RUN_MARKERS = (CONFIG, STATE, MODEL, HISTORY)


@dataclasses.dataclass
class Phase:
    name: str  # "head" (frozen base), "fine_tune" (top layers unfrozen) or "train" (from scratch)
    end_epoch: int
    lr: float


def plan_phases(config: RunConfig, pretrained: bool) -> list[Phase]:
    t = config.train
    if t.epochs < 1:
        raise EdgeclsError(f"--epochs must be at least 1, got {t.epochs}")
    if t.lookahead_every < 0:
        raise EdgeclsError(f"train.lookahead_every is a number of steps (0: off), got {t.lookahead_every}")
    check_optimizer_options(t.optimizer, t.bias_lr_scale, t.momentum)  # before any data work, not at compile
    check_augment_options(config.augment)
    if not pretrained or t.epochs == 1:
        return [Phase("head" if pretrained else "train", t.epochs, t.lr)]
    head = head_epochs(t)
    phases = [Phase("head", head, t.lr)]
    if head < t.epochs:
        phases.append(Phase("fine_tune", t.epochs, t.fine_tune_lr))
    return phases


def prepare_run_dir(out: Path, *, resume: bool, force: bool) -> None:
    existing = [m for m in RUN_MARKERS if (out / m).exists()]
    if resume:
        if not out.exists():
            # a typo in --out must not quietly start a second run beside the one meant
            raise EdgeclsError(f"nothing to resume: {out} does not exist (without --resume the run starts there)")
        if not RunFolder(out).is_run():
            raise EdgeclsError(f"nothing to resume: {out} is not a run folder (no {CONFIG})")
        return
    if existing:
        if not force:
            raise EdgeclsError(
                f"{out} already holds a run ({', '.join(existing)}); use --resume to continue it "
                "or --force to replace it"
            )
        _empty(out)
    out.mkdir(parents=True, exist_ok=True)


def _empty(out: Path) -> None:
    # The folder itself stays, with its lock file: removing it would free the lock we hold for another writer.
    for child in out.iterdir():
        if child.name == run_lock.LOCK_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _never_started(out: Path, config: RunConfig, strategy: str | None) -> bool:
    return (out.is_dir() and bool(config.data.path) and writes_run_folder(strategy or config.train.strategy)
            and not any((out / marker).exists() for marker in RUN_MARKERS))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)


def train(config: RunConfig, out_dir, *, resume: bool = False, force: bool = False, verbose: int = 1,
          strategy: str | None = None, wait: bool = True, callbacks=()) -> TrainResult:
    """Train into ``out_dir``. ``strategy`` overrides ``config.train.strategy``, also on --resume:
    it describes the hardware, not the recipe, and a run may resume on other hardware. The process
    that writes the run folder (the chief of a cluster) holds its lock (edgecls.run_lock; ``wait``).

    ``callbacks``: more Keras callbacks for every phase, called after the epoch is saved (an
    architecture search's pruner reads ``val_accuracy`` there). One that sets ``model.stop_training``
    and has a true ``ends_run`` attribute ends the whole run, not only its phase: the run is then
    finished as after early stopping (best weights, model.keras, metrics on the test split)."""
    out = Path(out_dir)
    if resume and _never_started(out, config, strategy):
        # Killed before its first write (while decoding images, say): nothing to continue, so
        # --resume starts the run its command line describes.
        print(f"note: {out} holds no run yet (stopped before its first epoch); starting it")
        resume = False
    if resume:
        if not RunFolder(out).is_run() and not writes_run_folder(strategy):
            raise EdgeclsError(f"nothing to resume: {out} is not visible from this worker; with --strategy "
                               "multiworker every worker reads the chief's run folder, so --out must be on "
                               "storage they all share")
        prepare_run_dir(out, resume=True, force=False)  # only checks, so every worker may call it
        config = load_run_config(out)
    if strategy is not None:
        config.train.strategy = strategy
    precision = config.train.resolve_precision()
    writer = writes_run_folder(config.train.strategy)
    # Held, the lock also clears what writes a kill interrupted: no one else writes here now.
    with run_lock.writing(out, wait=wait) if writer else contextlib.nullcontext():
        if not resume and writer:
            prepare_run_dir(out, resume=False, force=force)
        dist = make_distribution(config.train.strategy)
        with writable_run_dir(out, dist) as run_dir:
            return _train(config, out, run_dir, dist, precision, resume=resume, verbose=verbose,
                          callbacks=tuple(callbacks))


def _train(config: RunConfig, out: Path, run_dir: Path, dist: Distribution, precision: str, *, resume: bool,
           verbose: int, callbacks: tuple = ()) -> TrainResult:
    # ``out`` is the run folder; ``run_dir`` is where this process writes: ``out`` itself for the
    # chief, a scratch folder for the other workers of a cluster.
    state = RunState.load(out) if resume else None
    if state is not None and state.finished:
        print(f"{out} has already finished training; nothing to resume")
        if run_dir == out:
            _remove_resume_checkpoints(out, state)  # in case a kill came between finishing and this
        return TrainResult(out, _read_json(RunFolder(out).metrics), 0.0, state.epoch)
    state = state or RunState()
    if run_dir != out and state.checkpoint:
        best = [BEST_WEIGHTS] if state.best_epoch is not None else []
        adopt_chief_files(out, run_dir, [state.checkpoint, *best])

    spec = get_model_spec(config.model.arch)  # unknown architecture fails before any data work
    config.data.img_size = int(config.data.img_size or spec.default_size)
    # Resolved before any data work, so a missing weights file fails fast; config.yaml records the
    # choice, so --resume and later stages see what training used rather than "auto".
    chosen = modeling.choose_weights(spec.name, config.model.weights)
    if verbose and chosen != config.model.weights and chosen == "none":
        print(f"{spec.name} has no published ImageNet weights: training from scratch", file=sys.stderr)
    config.model.weights = chosen
    pretrained = spec.pretrained and modeling.resolve_weights(chosen) is not None
    phases = plan_phases(config, pretrained)
    batch_size = config.train.batch_size
    dist.per_replica_batch(batch_size)  # the global batch must split evenly, checked before data work
    if verbose and dist.kind != "default":
        print(dist.describe(batch_size))

    seed_everything(config.train.seed)
    data = prepare_data(config, run_dir, verbose=verbose)
    written = RunFolder(run_dir)
    write_text(written.config, config.to_yaml())
    write_text(written.labels, "\n".join(data.classes) + "\n")

    with precision_policy(precision):
        with dist.scope():  # variables, optimizer and loaded checkpoints must belong to the strategy
            model = _initial_model(config, data, state, run_dir, spec)
        train_ds = make_dataset(data.train.images, data.train.labels, data.num_classes, batch_size,
                                training=True, augment=config.augment, seed=config.train.seed)
        val_ds = (make_dataset(data.val.images, data.val.labels, data.num_classes, batch_size, training=False)
                  if len(data.val.labels) else None)
        train_ds = dist.train_pipeline(train_ds, len(data.train.labels), batch_size)
        if val_ds is not None:
            val_ds = dist.validation_pipeline(val_ds, len(data.val.labels), batch_size)
        _fit_phases(model, phases, config, spec, state, run_dir, train_ds, val_ds, dist,
                    steps_per_epoch(len(data.train.labels), batch_size), verbose, callbacks)

    # Every worker loads and saves: reading the weights is an all-reduce in a cluster.
    _load_best_weights(model, run_dir, dist)
    # Metrics come from the saved float32 model: the one evaluate, export and the Pi load.
    best = save_inference_model(model, written.model)
    if not dist.is_chief:
        print(f"{dist.task}: training done; the chief writes the run folder")
        return TrainResult(out, {}, 0.0, state.epoch)

    from edgecls.training.evaluation import evaluate_arrays

    metrics = evaluate_arrays(best, data.test.images, data.test.labels, data.test.paths, data.classes,
                              out, title=f"{config.model.arch} — test split")
    metrics.update({
        "arch": config.model.arch,
        "img_size": config.data.img_size,
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        # Summed over epochs, so time spent in interrupted sessions before --resume counts too.
        "train_seconds": round(sum(float(r.get("epoch_seconds", 0) or 0) for r in state.history), 1),
        "split_source": data.split_source,
    })
    write_json(RunFolder(out).metrics, metrics)
    from edgecls.training.evaluation_reports import plot_history

    plot_history(state.history, RunFolder(out).history_png)
    state.finished = True
    state.save(out)
    _remove_resume_checkpoints(out, state)
    return TrainResult(out, metrics, metrics["train_seconds"], state.epoch)


def _fit_phases(model, phases: list[Phase], config: RunConfig, spec, state: RunState, run_dir: Path, train_ds,
                val_ds, dist: Distribution, steps: int, verbose: int, extra_callbacks: tuple = ()) -> None:
    monitor = config.train.monitor if val_ds is not None else config.train.monitor.replace("val_", "")
    for index, phase in enumerate(phases):
        if phase.name in state.phases_done:
            continue
        resuming_this_phase = state.phase == phase.name and state.checkpoint is not None
        if not resuming_this_phase:
            if index > 0:
                # Fine-tuning starts from the best head, not from wherever phase 1 stopped.
                _load_best_weights(model, run_dir, dist)
            _set_trainable(model, phase, config, spec)
            with dist.scope():
                _compile(model, phase, config, steps, start_epoch=state.epoch)
            state.phase, state.phase_best, state.wait = phase.name, None, 0
        if state.epoch >= phase.end_epoch:
            state.phases_done.append(phase.name)
            continue
        if verbose:
            trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
            print(f"phase '{phase.name}': epochs {state.epoch + 1}-{phase.end_epoch}, lr {phase.lr:g}, "
                  f"{trainable:,} trainable parameters")
        if model.distribute_strategy is not dist.strategy:
            # A model built, loaded or compiled outside the scope trains on one device, silently.
            raise RuntimeError(f"the model is not under the {dist.kind} strategy")
        resources = ResourceMonitor(verbose=bool(verbose))
        # TensorBoard before the checkpointer: a kill between the two makes --resume log that epoch
        # again (into a new event file of the same folder), a step with two points at worst; the
        # other order would leave a step with none. Before ReduceLROnPlateau, so the learning rate
        # logged is the epoch's, as in history.csv.
        board = tensorboard_callbacks(RunFolder(run_dir).tensorboard, config.train.tensorboard and dist.is_chief)
        callbacks = [resources, *board, RunCheckpointer(run_dir, state, phase.name, monitor,
                                                        config.train.early_stopping_patience, resources)]
        if config.train.lookahead_every:
            callbacks.append(Lookahead(config.train.lookahead_every,
                                       _schedule_steps(model, (phase.end_epoch - state.epoch) * steps)))
        if config.train.reduce_lr_on_plateau:
            callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.3, patience=2,
                                                               mode="max" if "acc" in monitor else "min"))
        callbacks.extend(extra_callbacks)
        fine_tune(model, train_ds, val=val_ds, epochs=phase.end_epoch, initial_epoch=state.epoch,
                  callbacks=callbacks, verbose=verbose)
        state.phases_done.append(phase.name)
        state.save(run_dir)
        if any(getattr(callback, "ends_run", False) for callback in extra_callbacks):
            state.phases_done.extend(p.name for p in phases[index + 1:])
            state.save(run_dir)
            break


def _schedule_steps(model, fallback: int) -> int:
    # The whole phase, also on --resume: the schedule saved with the optimizer knows its length.
    return int(getattr(model.optimizer.learning_rate, "total_steps", fallback))


def _initial_model(config: RunConfig, data: PreparedData, state: RunState, out: Path, spec):
    if state.checkpoint:
        path = out / state.checkpoint
        if not path.is_file():
            raise EdgeclsError(f"cannot resume: checkpoint {path} is missing")
        print(f"resuming after epoch {state.epoch} from {state.checkpoint}")
        model = load_keras_model(path, compile=True)  # a damaged checkpoint is then one clear line
        check_outputs_match_labels(model.output_shape[-1], data.classes, path, source="the data's class folders")
        return model
    model = modeling.build_model(config.model.arch, config.data.img_size, data.num_classes,
                                 weights=config.model.weights, alpha=config.model.alpha,
                                 dropout=config.model.dropout)
    if spec.data_init is not None and config.model.weights in (None, "none"):
        # Weights from a file already hold what the data would give; only a fresh model needs it.
        spec.data_init(model, data.train.images)
    return model


def _set_trainable(model, phase: Phase, config: RunConfig, spec) -> None:
    if phase.name == "head":
        modeling.freeze_base(model)
    elif phase.name == "fine_tune":
        count = config.train.fine_tune_layers
        modeling.unfreeze_top(model, spec.fine_tune_layers if count is None else count)
    else:
        for layer in model.layers:
            layer.trainable = layer.name not in spec.frozen_layers


def _compile(model, phase: Phase, config: RunConfig, steps: int, start_epoch: int) -> None:
    t = config.train
    epochs = max(1, phase.end_epoch - start_epoch)
    if t.reduce_lr_on_plateau:
        learning_rate = phase.lr  # ReduceLROnPlateau needs a plain value it can lower
    else:
        learning_rate = WarmupCosine(phase.lr, total_steps=epochs * steps,
                                     warmup_steps=int(t.warmup_epochs * steps))
    compile_for_fine_tuning(model, t, optimizer="recipe", learning_rate=learning_rate)


def _load_best_weights(model, out: Path, dist: Distribution) -> None:
    path = out / BEST_WEIGHTS
    if path.is_file():
        dist.load_weights(model, path)


def _remove_resume_checkpoints(out: Path, state: RunState) -> None:
    # model.keras now holds the best weights; per-epoch optimizer state is no longer needed.
    if state.checkpoint:
        (out / state.checkpoint).unlink(missing_ok=True)


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text()) if path.is_file() else {}
