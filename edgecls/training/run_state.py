"""What a run has completed, written after every epoch so training resumes after any interruption.

``state.json`` is the single source of truth: it is replaced atomically only after the epoch's
checkpoint is on disk, so a run killed at any instant (kill -9 included) resumes from the last
epoch whose checkpoint and history row were both written.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

from edgecls.errors import EdgeclsError
from edgecls.fsutil import write_json, write_text
from edgecls.run_folder import RunFolder


@dataclasses.dataclass
class RunState:
    epoch: int = 0  # completed epochs, all phases together
    phase: str = ""
    phases_done: list = dataclasses.field(default_factory=list)
    checkpoint: str | None = None  # relative to the run folder
    history: list = dataclasses.field(default_factory=list)
    best_value: float | None = None
    best_epoch: int | None = None
    phase_best: float | None = None
    wait: int = 0
    finished: bool = False

    @classmethod
    def load(cls, run_dir: Path) -> RunState | None:
        path = RunFolder(run_dir).state
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})
        except (ValueError, TypeError) as err:
            raise EdgeclsError(f"cannot read {path}: {err}") from None

    def save(self, run_dir: Path) -> None:
        folder = RunFolder(run_dir)
        write_text(folder.history, history_csv(self.history))
        write_json(folder.state, dataclasses.asdict(self))


def history_csv(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_history(run_dir: Path) -> list[dict]:
    path = RunFolder(run_dir).history
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
