"""One writer per run and outputs that cannot be written, tried from the command line.

Every command that writes into a run holds its lock: a second one waits with a note, or with
``--no-wait`` stops naming the holder's PID (two real ``edgecls quantize`` processes, the first
paused with SIGSTOP while it holds the lock). Outputs that cannot be written (read-only disk, a
file where a folder goes) are one ``error:`` line and exit 2, before any long work.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from components import tmpfs
from deploy_helpers import assert_one_error_line, cli, cli_process_args

from edgecls.faults import STOP_ENV
from edgecls.sidecar import content_sha256, read_sidecar

HOLDER = textwrap.dedent("""
    import sys
    from edgecls.run_lock import writing
    with writing(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.readline()
""")


@pytest.fixture(scope="module")
def writers_run(colour_run, trained_colour_run):
    """The module's run with an int8 export, and its images beside it (``run.parent / "data"``)."""
    import edgecls

    edgecls.quantize(colour_run, int8=True, verbose=0)
    if not (colour_run.parent / "data").exists():
        shutil.copytree(trained_colour_run.parent / "data", colour_run.parent / "data")
    return colour_run


@pytest.fixture
def held(writers_run):
    """The run, its lock held by another real process for the test; yields that process's PID."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(writers_run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def _image(run: Path) -> Path:
    return next((run.parent / "data").rglob("*.png"))


COMMANDS = {
    "train --resume": lambda run, tmp: ["train", "--out", run, "--resume"],
    "train --force": lambda run, tmp: ["train", run.parent / "data", "--out", run, "--force", "--arch", "tiny_cnn",
                                       "--weights", "none", "--epochs", "1"],
    "evaluate": lambda run, tmp: ["evaluate", run],
    "quantize": lambda run, tmp: ["quantize", run, "--int8"],
    "export": lambda run, tmp: ["export", run, "--format", "onnx"],
    "prune": lambda run, tmp: ["prune", run, "--epochs", "1"],
    "optimize": lambda run, tmp: ["optimize", run],
    "gradcam": lambda run, tmp: ["gradcam", run, _image(run), "--out", tmp / "cams"],
    "report": lambda run, tmp: ["report", run],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_writing_command_names_the_holder_with_no_wait(writers_run, held, command, tmp_path, capsys):
    before = {p: p.stat().st_mtime_ns for p in writers_run.rglob("*") if p.is_file()}
    started = time.monotonic()
    code, out, err = cli([*COMMANDS[command](writers_run, tmp_path), "--no-wait"], capsys)
    assert_one_error_line(code, out, err, f"is being written by another edgecls process (PID {held})")
    assert time.monotonic() - started < 30  # refused before the work, not after it
    assert {p: p.stat().st_mtime_ns for p in writers_run.rglob("*") if p.is_file()} == before


def _wait_until_stopped(process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        state = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.05)
    raise AssertionError("the first writer never reached the lock")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_two_real_quantize_processes_take_turns(writers_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(writers_run, run)
    first = subprocess.Popen(cli_process_args(["quantize", run, "--int8", "-q"]), env={**os.environ, STOP_ENV: "lock-held"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_stopped(first)  # it holds the run's lock, paused there
        refused = subprocess.run(cli_process_args(["quantize", run, "--int8", "--no-wait"]), capture_output=True,
                                 text=True, timeout=300)
        assert_one_error_line(refused.returncode, refused.stdout, refused.stderr, f"(PID {first.pid})")
        second = subprocess.Popen(cli_process_args(["quantize", run, "--int8", "-q"]), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        note = second.stderr.readline()
        assert note.startswith(f"note: waiting for PID {first.pid} to finish writing {run.resolve()}"), note
        assert second.poll() is None  # still waiting while the first is paused
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.communicate()
    assert second.wait(timeout=300) == 0, second.communicate()
    int8 = run / "exports" / "int8.tflite"
    assert read_sidecar(int8)["sha256"] == content_sha256(int8)
    assert not list(run.rglob(".tmp-*"))


@pytest.fixture
def read_only_run(writers_run, tmp_path):
    """A copy of the run on a read-only tmpfs (mounted writable, filled, then remounted read-only)."""
    folder = tmp_path / "ro"
    with tmpfs(folder, size_kb=16 * 1024):
        shutil.copytree(writers_run, folder / "run")
        shutil.copytree(writers_run.parent / "data", folder / "data")
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True, text=True)
        assert remounted.returncode == 0, remounted.stderr
        yield folder / "run"


UNWRITABLE = {
    # name: (argv builder given (writers_run, read_only_run, a file), what the error line names)
    "train --out on a read-only disk": (lambda run, ro, file: ["train", run.parent / "data", "--out",
                                                               ro.parent / "new", "--arch", "tiny_cnn"], "new"),
    "train --out FILE": (lambda run, ro, file: ["train", run.parent / "data", "--out", file], "exists and is not"),
    "evaluate --out FILE": (lambda run, ro, file: ["evaluate", run, "--out", file], "exists and is not"),
    "gradcam --out FILE": (lambda run, ro, file: ["gradcam", run, _image(run), "--out", file], "exists and is not"),
    "quantize a read-only run": (lambda run, ro, file: ["quantize", ro, "--int8"], "Read-only file system"),
    "export a read-only run": (lambda run, ro, file: ["export", ro, "--format", "onnx"], "Read-only file system"),
    "prune a read-only run": (lambda run, ro, file: ["prune", ro], "Read-only file system"),
    "optimize a read-only run": (lambda run, ro, file: ["optimize", ro], "Read-only file system"),
    "report of a read-only run": (lambda run, ro, file: ["report", ro], "Read-only file system"),
    "bundle into a read-only folder": (lambda run, ro, file: ["bundle", run, "--out", ro.parent / "bundle"],
                                       "Read-only file system"),
}


@pytest.mark.parametrize("case", UNWRITABLE)
def test_outputs_that_cannot_be_written_are_one_error_line_before_the_work(writers_run, read_only_run, case, tmp_path,
                                                                          capsys):
    file = tmp_path / "a_file"
    file.write_text("mine\n")
    build, fragment = UNWRITABLE[case]
    started = time.monotonic()
    code, out, err = cli(build(writers_run, read_only_run, file), capsys)
    assert_one_error_line(code, out, err, fragment)
    assert time.monotonic() - started < 30
    assert file.read_text() == "mine\n"


def test_the_next_writer_removes_what_a_killed_export_left(writers_run, capsys):
    exports = writers_run / "exports"
    leftovers = [exports / ".tmp-k1ll3d00-int8.tflite", exports / ".tmp-k1ll3d01-int8.json",
                 exports / ".tmp-k1ll3d02-saved_model"]
    leftovers[0].write_bytes(b"half a flatbuffer")
    leftovers[1].write_text('{"model_file": "int8.tflite", "sha256": "not these bytes"}')
    (leftovers[2] / "variables").mkdir(parents=True)
    code, out, err = cli(["report", writers_run], capsys)
    assert code == 0, err
    assert not any(path.exists() for path in leftovers)
    assert read_sidecar(exports / "int8.tflite")["sha256"] == content_sha256(exports / "int8.tflite")
