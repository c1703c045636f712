"""The command line: help, and user mistakes ending in one clear line with a non-zero exit code."""

import subprocess
import sys

import pytest

from edgecls.cli import main

COMMANDS = ("train", "evaluate", "models", "demo", "recipes", "predict", "bench", "bundle")


def run_main(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize("entry", [["edgecls"], [sys.executable, "-m", "edgecls"]])
def test_help_lists_the_commands_without_importing_tensorflow(entry):
    bin_dir = __import__("pathlib").Path(sys.executable).parent
    cmd = [str(bin_dir / "edgecls")] if entry == ["edgecls"] else entry
    probe = ("import sys, runpy; sys.argv=['edgecls','--help']\n"
             "try:\n    runpy.run_module('edgecls', run_name='__main__')\nexcept SystemExit: pass\n"
             "assert 'tensorflow' not in sys.modules, 'help must not import TensorFlow'\n")
    result = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60).returncode == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "{tmp}/missing", "--out", "{tmp}/run"], "not found"),
        (["train", "{tmp}/empty", "--out", "{tmp}/run"], "{tmp}/empty"),
        (["train", "{tmp}/one", "--out", "{tmp}/run", "--weights", "none"], "one class"),
        (["train", "{tmp}/data", "--out", "{tmp}/run", "--arch", "nope"], "unknown architecture 'nope'"),
        (["train", "{tmp}/data", "--out", "{tmp}/run", "--config", "{tmp}/missing.yaml"], "config not found"),
        (["train", "--out", "{tmp}/run", "--resume"], "nothing to resume"),
        (["evaluate", "{tmp}/data"], "not a run folder"),
        (["evaluate", "{tmp}/bad.keras", "--data", "{tmp}/data"], "not a Keras model file"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(args, message, tmp_path, make_images, capsys):
    make_images(tmp_path / "data", per_class=4)
    make_images(tmp_path / "one", classes=("only",), per_class=4)
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.keras").write_bytes(b"garbage")
    code, out, err = run_main([a.format(tmp=tmp_path) for a in args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message.format(tmp=tmp_path) in lines[0]
    assert "Traceback" not in err + out


def test_a_real_process_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edgecls", "train", str(tmp_path / "nowhere"), "--out",
                             str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in result.stderr


def test_recipes_are_listed_with_their_purpose(capsys):
    code, out, _ = run_main(["recipes"], capsys)
    assert code in (0, None)
    assert "demo_digits:" in out
