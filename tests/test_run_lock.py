"""One writer per run folder (edgecls.run_lock), with real processes: wait, --no-wait, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from edgecls.errors import UnwritableError
from edgecls.run_lock import LOCK_FILE, RunBusyError, holds, writing

HOLDER = textwrap.dedent("""
    import sys
    from edgecls.run_lock import writing
    with writing(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.readline()  # released when the test says so, not after a guessed sleep
    print("released", flush=True)
""")
SECOND = textwrap.dedent("""
    import sys
    from edgecls.run_lock import writing
    from edgecls.errors import EdgeclsError
    try:
        with writing(sys.argv[1], wait=sys.argv[2] == "wait"):
            print("second writer got it", flush=True)
    except EdgeclsError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
""")


def _start_holder(run):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_with_no_wait_names_the_holder(tmp_path):
    holder = _start_holder(tmp_path)
    try:
        second = subprocess.run([sys.executable, "-c", SECOND, str(tmp_path), "no-wait"], capture_output=True,
                                text=True, timeout=60)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"PID {holder.pid}" in lines[0] and str(tmp_path) in lines[0], lines
    finally:
        holder.communicate("\n", timeout=60)


def test_a_second_writer_waits_with_one_note_then_runs(tmp_path):
    holder = _start_holder(tmp_path)
    second = subprocess.Popen([sys.executable, "-c", SECOND, str(tmp_path), "wait"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    note = second.stderr.readline()
    assert note.startswith("note: waiting for PID") and str(holder.pid) in note, note
    assert holder.communicate("\n", timeout=60)[0].strip() == "released"
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0 and out.strip() == "second writer got it", err


def test_a_killed_holder_leaves_the_run_unlocked_and_its_temps_are_cleared(tmp_path):
    holder = _start_holder(tmp_path)
    (tmp_path / "exports").mkdir()
    leftover = tmp_path / "exports" / ".tmp-abc-int8.tflite"
    leftover.write_bytes(b"half a model")
    staging = tmp_path / "exports" / ".tmp-saved_model-xyz"
    (staging / "model").mkdir(parents=True)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=60)
    second = subprocess.run([sys.executable, "-c", SECOND, str(tmp_path), "no-wait"], capture_output=True, text=True,
                            timeout=60)
    assert second.returncode == 0, second.stderr
    assert not leftover.exists() and not staging.exists()
    assert (tmp_path / LOCK_FILE).exists()


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with writing(tmp_path):
        with writing(tmp_path, wait=False):  # optimize calling quantize on the same run
            assert holds(tmp_path)
        assert holds(tmp_path)
    assert not holds(tmp_path)
    with writing(tmp_path, wait=False):
        pass


def test_an_unwritable_run_folder_is_one_line_before_any_work(tmp_path):
    in_the_way = tmp_path / "run"
    in_the_way.write_text("a file where the run folder should be")
    with pytest.raises(UnwritableError, match="exists and is not a folder"):
        with writing(in_the_way):
            pytest.fail("the block ran")
    with pytest.raises(UnwritableError, match="cannot write"):
        with writing(in_the_way / "sub"):
            pytest.fail("the block ran")


def test_busy_is_a_user_error():
    assert RunBusyError("x").exit_code == 2
