"""A benchmark's OUT.json and OUT.md: measure and write both, or (``--render-only``) rewrite the .md alone.

The .md is always written from the .json by the script's own ``markdown``, so text moved into the
writer reaches the committed .md without measuring again.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser, default_out: Path) -> None:
    parser.add_argument("--out", type=Path, default=default_out, help="writes OUT.json and OUT.md")
    parser.add_argument("--render-only", action="store_true", help="rewrite OUT.md from OUT.json, measure nothing")


def write_or_render(out: Path, render_only: bool, measure: Callable[[], dict], markdown: Callable[[dict], str]) -> str:
    """``measure()`` into OUT.json (unless ``render_only``), then OUT.md from it; returns the Markdown."""
    from edgecls.fsutil import write_json, write_text

    json_path = out.with_suffix(".json")
    if render_only:
        result = json.loads(json_path.read_text())
    else:
        result = measure()
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_path, result)
    text = markdown(result)
    write_text(out.with_suffix(".md"), text)
    return text
