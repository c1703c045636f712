"""Command-line options that several commands share, declared once: spelling, type and help.

Commands use them as annotations, with their own default where it differs::

    def quantize(run: RunArg, epochs: Epochs = 3, quiet: Quiet = False, no_progress: NoProgress = False): ...

``--quiet/-q`` is the one spelling for "no progress bars"; ``--no-progress`` (bench's older
spelling) is kept as a hidden alias, folded in by :func:`verbosity`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RunArg = Annotated[Path, typer.Argument(metavar="RUN", help="A run folder (from edgecls train).")]

Data = Annotated[str | None, typer.Option("--data", "-d", help="Class folders, or a dataset with a test/ folder, whose "
                                                                "test images are measured.")]
Model = Annotated[Path | None, typer.Option("--model", help="A model file of the run to use instead of its default "
                                                             "(e.g. exports/pruned.keras).")]
Calibration = Annotated[int, typer.Option("--calibration", help="Training images used to calibrate int8.")]
Epochs = Annotated[int | None, typer.Option("--epochs", help="Epochs to train (quantize --qat and prune: "
                                                              "fine-tuning epochs).")]
Lr = Annotated[float | None, typer.Option("--lr", help="Learning rate (train: the peak of phase 1 or from scratch; "
                                                        "quantize --qat and prune: fine-tuning, by default the "
                                                        "--fine-tune-optimizer's).")]
FineTuneOptimizer = Annotated[str, typer.Option(
    "--fine-tune-optimizer", help="Optimizer of QAT's and pruning's fine-tuning: adam | recipe (the run's own "
                                  "training optimizer, e.g. SGD with Nesterov momentum and weight decay, at a lower "
                                  "rate). Default --lr: 1e-4 for adam; for recipe the rate the run's schedule ended "
                                  "at (its last peak lr x 0.01).")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Images per step (default: the run's).")]
Threads = Annotated[int, typer.Option("--threads", help="Runtime threads.")]
Force = Annotated[bool, typer.Option("--force", help="Replace what is already there.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run where it stopped.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON records on stdout and nothing else "
                                                   "(progress and logs go to stderr).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or logs.")]
NoTensorboard = Annotated[bool, typer.Option("--no-tensorboard", help="Write no TensorBoard logs (RUN/tensorboard/; "
                                                                     "view them with tensorboard --logdir runs/).")]
DeviceArg = Annotated[str, typer.Argument(metavar="DEVICE", help="ssh://[user@]host[:port] or a host alias from "
                                                                  "~/.ssh/config (reached with your ssh and keys).")]
DevicePython = Annotated[str, typer.Option("--device-python", help="The Python to run on the device (e.g. a venv's "
                                                                   "bin/python).")]
DeviceOption = Annotated[str | None, typer.Option("--device", help="Time on this device instead of here: "
                                                                  "ssh://[user@]host[:port] or an ssh alias.")]
SshConfig = Annotated[Path | None, typer.Option("--ssh-config", help="An ssh config file to use instead of "
                                                                      "~/.ssh/config (ssh -F).")]
NoProgress = Annotated[bool, typer.Option("--no-progress", hidden=True, help="Same as --quiet (older spelling).")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="If another edgecls command is writing into the run, stop "
                                                        "at once with its PID instead of waiting for it.")]


def tensorboard_choice(no_tensorboard: bool) -> bool | None:
    """The API's ``tensorboard`` for ``--no-tensorboard``: None leaves it to the run's config."""
    return False if no_tensorboard else None


def verbosity(quiet: bool, no_progress: bool = False) -> int:
    """The API's ``verbose`` for ``--quiet`` and its hidden alias ``--no-progress``."""
    return 0 if quiet or no_progress else 1
