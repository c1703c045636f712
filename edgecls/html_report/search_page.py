"""``OUT/report.html`` of an ``edgecls search``: the choice, the best under each limit, the Pareto plot, every
trial, the untrained-vs-trained latency check and what feasibility dropped, from the files the search wrote."""

from __future__ import annotations

import os
from pathlib import Path

from edgecls.errors import EdgeclsError
from edgecls.fsutil import write_text
from edgecls.html_report.build import render
from edgecls.html_report.context import edgecls_version
from edgecls.html_report.reading import Notes, image_data_uri, read_json

TEMPLATE = "search.html.j2"


def build_search_report(out: str | os.PathLike) -> Path:
    """Write ``out/report.html`` from ``search.json``, ``feasibility.json`` and ``pareto.png``; returns its path."""
    out = Path(out)
    notes = Notes(out)
    search = read_json(out / "search.json", notes)
    if search is None:
        raise EdgeclsError(f"{out} holds no search.json: give a folder edgecls search wrote")
    feasibility = read_json(out / "feasibility.json", notes) or {}
    context = {
        "version": edgecls_version(), "title": out.name, "out": str(out.resolve()), "search": search,
        "dropped": [r for r in feasibility.get("configurations", []) if not r.get("feasible")],
        "pareto": image_data_uri(out / "pareto.png", notes), "notes": notes.items,
    }
    return write_text(out / "report.html", render(context, TEMPLATE))
