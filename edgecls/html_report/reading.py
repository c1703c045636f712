"""Reading a run folder's files for the report without ever failing on one of them.

The report is a view of files other commands wrote, sometimes half a run (training interrupted,
no exports yet) or a file from an older version. A file that is missing leaves its section out;
a file that cannot be read becomes a note on the page instead of an exception.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from edgecls.errors import first_line

# Browsers decode these in an <img>; anything else is converted to PNG first.
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}


@dataclass
class Notes:
    """Problems met while reading, shown at the end of the report (relative to the run folder)."""

    root: Path
    items: list[str] = field(default_factory=list)

    def add(self, path: str | os.PathLike, err: BaseException | str) -> None:
        reason = err if isinstance(err, str) else first_line(err)
        self.items.append(f"{self.relative(path)}: {reason}")

    def relative(self, path: str | os.PathLike) -> str:
        path = Path(path)
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


def read_json(path: Path, notes: Notes):
    """The parsed JSON of ``path``; None when it is absent or unreadable (then noted)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        notes.add(path, f"not readable as JSON ({first_line(err)})")
        return None


def read_text(path: Path, notes: Notes) -> str | None:
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        notes.add(path, err)
        return None


def read_csv_rows(path: Path, notes: Notes) -> list[dict] | None:
    text = read_text(path, notes)
    if text is None:
        return None
    try:
        return list(csv.DictReader(io.StringIO(text)))
    except csv.Error as err:
        notes.add(path, f"not readable as CSV ({first_line(err)})")
        return None


def image_data_uri(path: Path, notes: Notes) -> str | None:
    """``path`` as a ``data:`` URI the page embeds; None when absent or not a decodable image.

    Every image is decoded here first: a truncated PNG embedded as is would show as a broken
    image in the browser, while a note says which file is damaged.
    """
    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mime = _MIME.get(img.format or "")
            if mime is None:
                return pil_data_uri(img.convert("RGB"))
    except Exception as err:  # PIL raises many types for damaged files
        notes.add(path, f"not a readable image ({first_line(err)})")
        return None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def pil_data_uri(img: Image.Image) -> str:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def as_float(value) -> float | None:
    """A number from JSON or CSV text; None for blanks and junk (a CSV cell may be empty, a field
    of an older file absent: the template's Undefined fails float() with its own error type)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except Exception:
        return None
    return number if number == number else None  # NaN is as good as missing here


def mapping(parent, key: str) -> dict:
    """``parent[key]`` when both are JSON objects, else an empty dict (a field of the wrong type
    in a hand-edited or older file reads as absent)."""
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}
