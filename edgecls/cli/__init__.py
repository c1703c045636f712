"""The ``edgecls`` command line: a thin layer over :mod:`edgecls.api`.

Each command (in ``edgecls.cli.training``, ``optimizing``, ``searching``, ``deploying``, ``insight``) parses its
flags, calls one API function and prints the
result; ``main`` turns user mistakes (:class:`~edgecls.errors.EdgeclsError`) into one line
``error: ...`` and their exit code. TensorFlow loads inside the API calls, so ``edgecls --help``
stays instant.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from edgecls.cli import deploying, devices, insight, optimizing, searching, training
from edgecls.errors import EdgeclsError, is_user_os_error, unwritable

app = typer.Typer(
    help="From a folder of labelled images to a fast, small, accurate classifier on a Raspberry Pi.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
_debug = {"on": bool(os.environ.get("EDGECLS_DEBUG"))}

# The order of `edgecls --help`: the flow a user walks.
COMMANDS = (
    ("train", training.train), ("evaluate", training.evaluate), ("models", training.models),
    ("recipes", training.recipes), ("demo", training.demo), ("prune", optimizing.prune),
    ("quantize", optimizing.quantize), ("export", optimizing.export), ("optimize", optimizing.optimize),
    ("search", searching.search),
    ("predict", deploying.predict), ("bench", deploying.bench), ("bundle", deploying.bundle),
    ("gradcam", insight.gradcam), ("report", insight.report),
)
for _name, _command in COMMANDS:
    app.command(_name)(_command)
app.add_typer(devices.app, name="device")


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")):
    if debug:
        _debug["on"] = True
        os.environ["EDGECLS_DEBUG"] = "1"


LEGACY_JSON_NOTE = ("note: `edgecls bench --json FILE` is deprecated: use --json-out FILE "
                    "(--json alone prints the records on stdout)")


def upgrade_legacy_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Rewrite spellings older releases accepted; returns (args, notes for stderr).

    ``bench --json FILE`` wrote a file; ``--json`` is now a flag (records on stdout) and the file
    is ``--json-out FILE``. The old form is recognised by a value ending in ``.json`` right after
    ``--json`` (a model or run folder never ends so), or by ``--json=FILE``.
    """
    command = next((i for i, arg in enumerate(args) if not arg.startswith("-")), None)
    if command is None or args[command] != "bench":
        return list(args), []
    upgraded, notes, i = list(args[:command + 1]), [], command + 1
    while i < len(args):
        arg = args[i]
        if arg == "--":
            upgraded.extend(args[i:])
            break
        if arg == "--json" and i + 1 < len(args) and args[i + 1].lower().endswith(".json"):
            upgraded += ["--json-out", args[i + 1]]
            notes.append(LEGACY_JSON_NOTE)
            i += 2
            continue
        if arg.startswith("--json="):
            upgraded.append("--json-out=" + arg[len("--json="):])
            notes.append(LEGACY_JSON_NOTE)
        else:
            upgraded.append(arg)
        i += 1
    return upgraded, notes[:1]


def main(argv: list[str] | None = None) -> None:
    args, notes = upgrade_legacy_args([str(a) for a in (sys.argv[1:] if argv is None else argv)])
    for note in notes:
        typer.echo(note, err=True)
    try:
        app(args=args, prog_name="edgecls")
    except EdgeclsError as err:
        if _debug["on"]:
            traceback.print_exc()
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted (a training run continues with --resume)", err=True)
        sys.exit(130)
    except OSError as err:
        if not is_user_os_error(err):
            _internal_error(err)
        if _debug["on"]:
            traceback.print_exc()
        # A write deep inside a library (Keras, tf2onnx) that the file system refused: the user's to fix.
        user = unwritable(err)
        typer.echo(f"error: {user}", err=True)
        sys.exit(user.exit_code)
    except Exception as err:  # noqa: BLE001 - a bug: say so in one line, keep the traceback for --debug
        _internal_error(err)


def _internal_error(err: Exception):
    if _debug["on"]:
        traceback.print_exc()
    typer.echo(f"internal error: {type(err).__name__}: {err} (run with --debug for details; please report it)",
               err=True)
    sys.exit(1)
