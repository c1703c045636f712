"""Generate ``docs/cli.md`` from the command line's own ``--help``: ``python -m edgecls.cli.docs``.

The reference is the help text itself, for every command the typer app registers, so it cannot
drift from the code; ``tests/test_cli_docs.py`` checks that the committed file is what this writes
(``python -m edgecls.cli.docs --check`` says the same, exit code 1 when stale).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

WIDTH = 100  # fixed, so the file does not depend on the terminal it was generated in
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "docs" / "cli.md"

HEADER = """\
# `edgecls` command-line reference

Generated from `edgecls --help` by `python -m edgecls.cli.docs`; do not edit by hand.

Conventions shared by every command:

- `--json` prints JSON records on stdout and nothing else; progress bars, tables and notes go to stderr.
  Files are written with their own options (`bench --json-out FILE`, `--csv FILE`).
- `--quiet` / `-q` turns progress bars and logs off (`--no-progress` is an older spelling of it).
- Mistakes end with one line `error: ...` on stderr and exit code 2; `edgecls --debug COMMAND ...` shows
  the traceback. `edgecls optimize` exits with 3 when no candidate stays within `--max-drop`.
- Everything here is also a Python function: see "Python API" in the README.
"""


def commands() -> list[tuple[str, object]]:
    """(name, click command) for every command of the real app, in ``edgecls --help`` order; a group's
    commands follow it as ``"group command"`` (``device check``)."""
    import typer

    from edgecls.cli import app

    group = typer.main.get_command(app)
    ctx = _context(group, "edgecls")
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        found.append((name, command))
        if hasattr(command, "list_commands"):
            sub = _context(command, name, parent=ctx)
            found += [(f"{name} {child}", command.get_command(sub, child)) for child in command.list_commands(sub)]
    return found


def help_text(name: str | None = None) -> str:
    """``edgecls --help`` (``name`` None) or ``edgecls NAME --help`` (``NAME`` may be ``group command``), at the
    fixed width."""
    import typer

    from edgecls.cli import app

    command = typer.main.get_command(app)
    ctx = _context(command, "edgecls")
    for part in (name or "").split():
        command = command.get_command(ctx, part)
        ctx = _context(command, part, parent=ctx)
    return command.get_help(ctx)


def _context(command, name: str, parent=None):
    import typer._click as click  # typer's own copy of click, the one its commands are built on

    return click.Context(command, info_name=name, parent=parent, terminal_width=WIDTH, max_content_width=WIDTH)


def render() -> str:
    parts = [HEADER, "## edgecls\n", f"```text\n{help_text().rstrip()}\n```\n"]
    for name, _ in commands():
        parts.append(f"## edgecls {name}\n")
        parts.append(f"```text\n{help_text(name).rstrip()}\n```\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgecls.cli.docs", description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH, help=f"default: {DEFAULT_PATH}")
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is not what would be written")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.is_file() else ""
        if current != text:
            print(f"{args.path} is stale: run python -m edgecls.cli.docs", file=sys.stderr)
            return 1
        return 0
    from edgecls.fsutil import write_text

    args.path.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.path, text)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
