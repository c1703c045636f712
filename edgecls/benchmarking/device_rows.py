"""Rows measured on the device: ``pi_infer.py --bench N`` writes them, ``edgecls bench --import`` reads them.

The file is a JSON list of records with the same fields as the host's (missing ones stay empty),
so device rows join the same table, CSV and plot.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgecls.errors import EdgeclsError, first_line

REQUIRED = ("model", "runtime", "latency_ms")


def read_device_records(path) -> list[dict]:
    """The bench records a device wrote (``pi_infer.py --bench-json``), checked, as host records are."""
    path = Path(path)
    if not path.is_file():
        raise EdgeclsError(f"bench file to import not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise EdgeclsError(f"cannot read {path}: not JSON ({first_line(err, 120)})") from None
    records = data.get("records") if isinstance(data, dict) else data
    if not isinstance(records, list) or not records:
        raise EdgeclsError(f"{path} holds no bench records (expected the JSON list pi_infer.py --bench writes)")
    checked = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise EdgeclsError(f"{path}: record {number} is not an object")
        missing = [key for key in REQUIRED if key not in record]
        latency = record.get("latency_ms")
        if missing or not isinstance(latency, dict) or not isinstance(latency.get("p50"), (int, float)):
            what = missing[0] if missing else "latency_ms.p50"
            raise EdgeclsError(f"{path}: record {number} has no {what}; is this a pi_infer.py --bench file?")
        record = dict(record)
        record.setdefault("source", "device")
        record.setdefault("name", Path(str(record["model"])).name)
        record.setdefault("where", {"on": f"device (imported from {path.name})", "host": record.get("host"),
                                    "machine": record.get("machine"), "cpu": record.get("cpu"), "board": None,
                                    "cpu_flags": None, "cores": None})
        record["imported_from"] = str(path)
        checked.append(record)
    return checked
