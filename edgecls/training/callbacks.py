"""Keras callbacks: per-epoch checkpoint + resumable state + early stopping, resource use, progress, TensorBoard."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from edgecls.fsutil import atomic_path
from edgecls.progress import progress_bar
from edgecls.run_folder import CHECKPOINTS
from edgecls.tf import keras, tf
from edgecls.training.run_state import RunState
from edgecls.training.schedules import current_lr

# Relative to the run folder, as state.json records checkpoints.
BEST_WEIGHTS = f"{CHECKPOINTS}/best.weights.h5"


def save_model(model, path: Path) -> None:
    """Save a whole model (with its optimizer state when compiled), atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def save_weights(model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save_weights(tmp)


def save_inference_model(model, path: Path):
    """Save weights and architecture only, in float32; returns the saved model.

    The clone is there because the .keras format has no switch to leave the optimizer out. Layers
    of a mixed-precision model come back as float32: their weights are float32 already, and every
    exporter, runtime and the Pi expect float32 compute with float32 input and output.
    """
    bare = keras.models.clone_model(model, clone_function=_float32_layer)
    bare.set_weights(model.get_weights())
    save_model(bare, path)
    return bare


def _float32_layer(layer):
    config = layer.get_config()
    # Keras writes a plain dtype as a string and a mixed-precision policy as a mapping.
    if isinstance(config.get("dtype"), dict):
        config["dtype"] = "float32"
    return layer.__class__.from_config(config)


class ResourceMonitor(keras.callbacks.Callback):
    """Measures CPU, RAM (and GPU memory, where there is one) each epoch for history.csv.

    Kept out of Keras' logs so the progress bar shows only the training metrics.
    """

    def __init__(self, verbose: bool = True):
        super().__init__()
        self.process = psutil.Process(os.getpid())
        self.gpus = tf.config.list_logical_devices("GPU")
        self.verbose = verbose
        self.last: dict = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.process.cpu_percent(None)  # starts the measuring interval
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        usage = {
            "epoch_seconds": round(time.perf_counter() - self.started, 2),
            "cpu_percent": round(self.process.cpu_percent(None), 1),
            "rss_mb": round(self.process.memory_info().rss / 2**20, 1),
            "system_ram_percent": psutil.virtual_memory().percent,
        }
        for index, device in enumerate(self.gpus):
            try:
                info = tf.config.experimental.get_memory_info(device.name)
                usage[f"gpu{index}_peak_mb"] = round(info["peak"] / 2**20, 1)
            except (ValueError, RuntimeError):
                pass
        self.last = usage
        if self.verbose:
            gpu = "".join(f", GPU{k[3:-8]} peak {v:.0f} MB" for k, v in usage.items() if k.startswith("gpu"))
            print(f"  {usage['epoch_seconds']:.1f} s, CPU {usage['cpu_percent']:.0f}%, "
                  f"RSS {usage['rss_mb']:.0f} MB, system RAM {usage['system_ram_percent']:.0f}%{gpu}")


class EpochProgress(keras.callbacks.Callback):
    """A bar of the epoch's steps on stderr while it runs, then one line of its metrics on stdout.

    Replaces Keras' own progress output (``fit(verbose=0)``), which draws on stdout and, in a log,
    leaves one redraw per batch; the line per epoch keeps the log of a run readable.
    """

    def __init__(self, stack: contextlib.ExitStack):
        super().__init__()
        self._stack = stack
        self._advance = None

    def on_epoch_begin(self, epoch, logs=None):
        self._close()
        total = self.params.get("epochs")
        self._advance = self._stack.enter_context(progress_bar(f"epoch {epoch + 1}/{total}",
                                                               self.params.get("steps")))

    def on_train_batch_end(self, batch, logs=None):
        if self._advance is not None:
            self._advance()

    def on_epoch_end(self, epoch, logs=None):
        self._close()
        metrics = ", ".join(f"{name} {_plain(value):.4f}" for name, value in (logs or {}).items()
                            if isinstance(_plain(value), float))
        print(f"Epoch {epoch + 1}/{self.params.get('epochs')}: {metrics}", flush=True)

    def _close(self):
        if self._advance is not None:
            self._stack.close()  # only this epoch's bar is on the stack
            self._advance = None


@contextlib.contextmanager
def epoch_progress(enabled: bool = True) -> Iterator[list]:
    """The progress callbacks for ``model.fit(..., verbose=0)``: ``[EpochProgress]``, or ``[]`` when quiet.

    A context manager, so an epoch interrupted by an exception still takes its bar down.
    """
    with contextlib.ExitStack() as stack:
        yield [EpochProgress(stack)] if enabled else []


class RunCheckpointer(keras.callbacks.Callback):
    """After each epoch: best model, resumable checkpoint, history and state, then early stopping.

    Order matters for crash safety: the epoch checkpoint is renamed into place before the state
    that names it, and the previous checkpoint is removed only after that.
    """

    def __init__(self, run_dir: Path, state: RunState, phase: str, monitor: str, patience: int,
                 resources: ResourceMonitor | None = None):
        super().__init__()
        self.resources = resources
        self.run_dir = Path(run_dir)
        self.state = state
        self.phase = phase
        self.monitor = monitor
        self.mode_max = "acc" in monitor
        self.patience = patience

    def _better(self, value, reference) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if reference is None:
            return True
        return value > reference if self.mode_max else value < reference

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        row = {"epoch": epoch + 1, "phase": self.phase}
        row.update({k: _plain(v) for k, v in logs.items()})
        row["lr"] = current_lr(self.model.optimizer)
        if self.resources is not None:
            row.update(self.resources.last)
        state = self.state
        value = logs.get(self.monitor, logs.get(self.monitor.replace("val_", "")))

        if self._better(value, state.best_value):
            save_weights(self.model, self.run_dir / BEST_WEIGHTS)
            state.best_value, state.best_epoch = float(value), epoch + 1
        if self._better(value, state.phase_best):
            state.phase_best, state.wait = float(value), 0
        else:
            state.wait += 1

        previous = state.checkpoint
        name = f"{CHECKPOINTS}/epoch-{epoch + 1:04d}.keras"
        save_model(self.model, self.run_dir / name)
        state.history.append(row)
        state.epoch, state.phase, state.checkpoint = epoch + 1, self.phase, name
        state.save(self.run_dir)
        if previous and previous != name:
            (self.run_dir / previous).unlink(missing_ok=True)

        if self.patience > 0 and state.wait >= self.patience:
            print(f"early stopping: no {self.monitor} improvement in {self.patience} epochs")
            self.model.stop_training = True


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, once per epoch, with the learning rate history.csv records.

    Keras logs ``learning_rate`` only for a schedule, and then the rate of the step after the
    epoch; this logs it for a plain value too (ReduceLROnPlateau, pruning's Adam), and as the rate
    of the epoch's last step, so the curve and history.csv agree.
    """

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})  # the other callbacks (history.csv, the epoch line) keep theirs as they were
        logs["learning_rate"] = current_lr(self.model.optimizer)
        super().on_epoch_end(epoch, logs)
        # Keras flushes every two minutes or at the end of fit(); a kill -9 in between would lose
        # the epochs a --resume does not run again.
        for writer in getattr(self, "_writers", {}).values():
            writer.flush()

    def _collect_learning_rate(self, logs):
        # Keras' hook that would replace the rate above with the next step's; should a later
        # version rename it, Keras' own value is logged instead, one step later.
        return logs


def tensorboard_callbacks(log_dir: Path, enabled: bool = True) -> list:
    """``[EpochTensorBoard]`` writing ``log_dir/train`` and ``log_dir/validation``, or ``[]`` when off.

    Scalars only, per epoch: no graph, histograms or profiling, which cost time on every run and
    which a user asks TensorBoard for explicitly (``keras.callbacks.TensorBoard``) when needed.
    """
    if not enabled:
        return []
    return [EpochTensorBoard(log_dir=str(log_dir), update_freq="epoch", histogram_freq=0, write_graph=False,
                             write_images=False, write_steps_per_second=False, profile_batch=0)]


def _plain(value):
    try:
        return round(float(value), 6)
    except (TypeError, ValueError):
        return value


class KeepBestOnValidation(keras.callbacks.Callback):
    """Hand back the weights of the epoch with the best validation top-1, the start counting as epoch 0.

    For QAT the start is the calibrated model, which computes what PTQ computes; fine-tuning that
    lowers validation accuracy (too high a learning rate, too few images per class) is then
    undone instead of shipped. Chosen on validation only: the test split never decides.
    """

    def __init__(self, start_accuracy: float):
        super().__init__()
        self.history = [float(start_accuracy)]
        self.kept_epoch = 0
        self._best = None

    def on_train_begin(self, logs=None):
        self._best = self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        accuracy = float((logs or {}).get("val_accuracy", float("nan")))
        self.history.append(accuracy)
        if accuracy > max(self.history[:-1]):
            self.kept_epoch = epoch + 1
            self._best = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self._best is not None:
            self.model.set_weights(self._best)
