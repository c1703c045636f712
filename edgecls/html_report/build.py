"""``build_report``: RUN/report.html, one self-contained page built from the run folder's files."""

from __future__ import annotations

import os
from pathlib import Path

from edgecls.errors import EdgeclsError
from edgecls.fsutil import write_text
from edgecls.html_report.context import collect
from edgecls.html_report.formatting import FILTERS
from edgecls.run_folder import RunFolder

TEMPLATES = Path(__file__).with_name("templates")
TEMPLATE = "report.html.j2"


def build_report(run_dir: str | os.PathLike) -> Path:
    """Write ``run_dir/report.html`` (atomically) from whatever the run folder holds; returns its path.

    Sections whose files are absent are left out, so a run stopped half-way still gets a page.
    Images are embedded as data URIs and nothing is fetched from the network, so the file can be
    mailed or attached to an issue on its own.
    """
    run = RunFolder(run_dir)
    if not run.path.is_dir():
        raise EdgeclsError(f"run folder not found: {run.path}")
    if not run.is_run():
        raise EdgeclsError(f"{run.path} is not a run folder (no {run.config.name}); give a folder edgecls train wrote")
    html = render(collect(run))
    return write_text(run.report_html, html)


def render(context: dict, template: str = TEMPLATE) -> str:
    # jinja2 is imported here so that merely importing edgecls.report stays cheap.
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        # Fields missing from a run's files (older versions, other tools) render as blanks.
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env.get_template(template).render(**context)
