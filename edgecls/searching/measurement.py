"""Measuring the optimize search's candidates: timing, accuracy, sidecars, and the chosen copy.

Latency comes from one interleaved loop (``edgecls.timing``): a quick pass as each candidate
arrives, timed beside the float32 reference, and one pass over all candidates at the end, whose
numbers the choice uses. Accuracy is measured through the deploy runtimes on the validation
split (chosen on) and the test split (reported), exactly as a device would run the file.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from edgecls.errors import EdgeclsError
from edgecls.metrics import top1_accuracy
from edgecls.run_folder import RunFolder
from edgecls.searching import leaderboard as board


class Timer:
    """Interleaved latency on this machine: a quick pass per new candidate beside float32, one over
    all at the end. ``where`` says where the latencies are taken (:mod:`edgecls.devices.machine_probe`)."""

    def __init__(self, *, threads: int, rounds: int, runs: int, warmup: int, images: np.ndarray):
        if rounds < 1 or runs < 1 or warmup < 0:
            raise EdgeclsError("latency rounds and runs must be at least 1, warm-up at least 0")
        from edgecls.devices.machine_probe import host_where

        self.threads, self.rounds, self.runs, self.warmup = threads, rounds, runs, warmup
        self.image = np.asarray(images[:1])
        self.calls: dict[str, object] = {}
        self.reference: str | None = None
        self.where = host_where()

    def add(self, variant: str, path: Path) -> None:
        from edgecls.deploy.runtimes import open_model

        runtime = open_model(path, threads=self.threads, quiet=True)
        prepared = runtime.prepare(_sized(self.image, runtime.input_size))
        self.calls[variant] = lambda: runtime.invoke(prepared)
        if self.reference is None:
            self.reference = variant

    def quick(self, variant: str) -> tuple[float, float | None]:
        """(this candidate's latency, its ratio to the reference's), timed side by side; provisional."""
        names = list(dict.fromkeys(n for n in (self.reference, variant) if n is not None))
        timed = self.time(names, rounds=max(2, self.rounds // 2))
        mine = timed[variant]["median_ms"]
        return mine, mine / timed[self.reference]["median_ms"] if timed[self.reference]["median_ms"] else None

    def time(self, names: list[str], *, rounds: int, advance=None) -> dict[str, dict]:
        """``names`` timed interleaved: per name ``median_ms``, ``p90_ms`` and ``spread_pct``."""
        from edgecls.timing import interleaved_latency

        timed = interleaved_latency({n: self.calls[n] for n in names}, rounds=rounds, runs=self.runs,
                                    warmup=self.warmup, advance=advance)
        return {name: {"median_ms": entry["median_ms"], "p90_ms": entry["latency_ms"]["p90"],
                       "spread_pct": entry["spread_pct"]} for name, entry in timed.items()}

    def timed_all(self, names: list[str], *, enabled: bool) -> dict[str, dict]:
        from edgecls.progress import progress_bar

        total = len(names) * (self.warmup + self.rounds * self.runs)
        with progress_bar(f"timing {len(names)} candidates, interleaved", total, enabled=enabled) as advance:
            return self.time(names, rounds=self.rounds, advance=advance)

    def final(self, records: list[dict], *, enabled: bool) -> None:
        """Time every candidate again, all in one interleaved loop: the latencies the choice uses."""
        names = [r["variant"] for r in records if r["variant"] in self.calls]
        if not names:
            return
        timed = self.timed_all(names, enabled=enabled)
        reference = {r["format"]: timed[r["variant"]]["median_ms"] for r in records
                     if r["family"] in ("float32", "onnx_float32") and r["variant"] in timed}
        for record in records:
            if record["variant"] not in timed:
                continue
            entry = timed[record["variant"]]
            record["latency_ms"] = entry["median_ms"]
            record["latency_p90_ms"] = entry["p90_ms"]
            record["latency_spread_pct"] = entry["spread_pct"]
            float_ms = reference.get(record["format"])
            record["latency_vs_float32"] = entry["median_ms"] / float_ms if float_ms else None
            record["latency_measured"] = (f"interleaved over {len(names)} candidates, {self.rounds}×{self.runs} runs, "
                                          f"on {self.where['on']}")
            record["where"] = dict(self.where)


def _sized(image: np.ndarray, size) -> np.ndarray:
    """``image`` (1, H, W, 3) at the model's input size: models of several sizes are timed in one loop, and
    latency does not depend on the pixels."""
    if tuple(image.shape[1:3]) == tuple(size):
        return image
    from PIL import Image

    resized = Image.fromarray(np.asarray(image[0], dtype=np.uint8)).resize((int(size[1]), int(size[0])))
    return np.asarray(resized, dtype=np.uint8)[None]


class DeviceTimer(Timer):
    """The same measurement on a device (``optimize --device``): every pass is one interleaved
    ``pi_infer.py --bench`` there, through the command's one connection (:class:`edgecls.devices.session.Device`);
    the files are the candidates' own bytes, copied once each to the device's cache."""

    def __init__(self, device, *, threads: int, rounds: int, runs: int, warmup: int, images: np.ndarray):
        super().__init__(threads=threads, rounds=rounds, runs=runs, warmup=warmup, images=images)
        self.device = device
        self.where = device.where()

    def add(self, variant: str, path: Path) -> None:
        if Path(path).suffix.lower() != ".tflite":
            raise EdgeclsError(f"only .tflite models run on the device (pi_infer.py): {path}")
        self.calls[variant] = Path(path)
        if self.reference is None:
            self.reference = variant

    def time(self, names: list[str], *, rounds: int, advance=None) -> dict[str, dict]:
        records = self.device.time_models([self.calls[n] for n in names], threads=self.threads, runs=self.runs,
                                          rounds=rounds, warmup=self.warmup, e2e_images=0)
        if advance is not None:
            advance(len(names) * (self.warmup + rounds * self.runs))
        return {name: {"median_ms": float(np.median(r["rounds"]["medians_ms"])), "p90_ms": r["latency_ms"]["p90"],
                       "spread_pct": r["rounds"]["spread_pct"]} for name, r in zip(names, records)}

    def timed_all(self, names: list[str], *, enabled: bool) -> dict[str, dict]:
        if enabled:
            print(f"timing {len(names)} candidates on {self.device.name}, interleaved "
                  f"({self.rounds}×{self.runs} runs each)", file=sys.stderr)
        return self.time(names, rounds=self.rounds)


class Measurer:
    """Builds (or, resuming, reuses) a candidate's file, then measures and describes it."""

    def __init__(self, ctx, out_dir: Path, timer: Timer, *, float_val: float, float_test: float, sha: str):
        self.ctx, self.out_dir, self.timer = ctx, out_dir, timer
        self.float_val, self.float_test, self.sha = float_val, float_test, sha

    def __call__(self, candidate, previous: dict | None, state) -> dict:
        """``state``: the search's SearchState, which keeps each candidate's validation probabilities."""
        from edgecls.deploy.runtimes import open_model

        path = self.out_dir / f"{candidate.variant}{candidate.suffix}"
        if previous is not None and previous.get("settings") == plain(candidate.settings):
            record = dict(previous, resumed=True, chosen=False)
            runtime = open_model(path, quiet=True)
            state.val_probs[candidate.variant] = runtime.predict(self.ctx.val_images)
            self.timer.add(candidate.variant, path)
            if record.get("latency_ms") is None or not same_place(record.get("where"), self.timer.where):
                self._time(record)  # never timed (the device was lost), or timed elsewhere
            return record
        from edgecls.publish import publish

        started, built = time.monotonic(), {}

        def write(tmp: Path) -> None:
            built["extra"] = candidate.write(tmp) or {}
            built["seconds"] = time.monotonic() - started

        def measure(tmp: Path) -> dict:
            runtime = open_model(tmp, quiet=True)
            built["val_probs"] = runtime.predict(self.ctx.val_images)
            built["val"] = top1_accuracy(self.ctx.val_labels, built["val_probs"])
            built["test"] = top1_accuracy(self.ctx.test_labels, runtime.predict(self.ctx.test_images))
            accuracy = {"top1": built["test"], "split": "test", "num_samples": int(len(self.ctx.test_labels)),
                        "float_top1": self.float_test, "val_top1": built["val"], "float_val_top1": self.float_val,
                        "val_samples": int(len(self.ctx.val_labels))}
            sidecar, built["described"] = _describe(self.ctx, candidate, tmp, accuracy, built["extra"])
            return sidecar

        sidecar = publish(path, write, measure)
        state.val_probs[candidate.variant] = built["val_probs"]
        val, test, described, size = built["val"], built["test"], built["described"], sidecar["size"]
        build_seconds = built["seconds"]
        self.timer.add(candidate.variant, path)
        record = {
            "variant": candidate.variant, "format": candidate.fmt, "family": candidate.family, "path": str(path),
            "val_accuracy": val, "test_accuracy": test,
            "val_drop_pt": board.val_drop_pt(val, self.float_val),
            "test_drop_pt": board.val_drop_pt(test, self.float_test),
            "latency_ms": None, "latency_vs_float32": None, "where": None,
            "size_bytes": size["bytes"], "gzip_bytes": size["gzip_bytes"],
            "partitions": described["partitions"], "float_ops": described["float_ops"],
            "integer": described["integer"], "within_budget": False, "chosen": False,
            "build_seconds": round(build_seconds, 2), "settings": plain(candidate.settings),
            "notes": described["notes"], "source_sha256": self.sha,
        }
        self._time(record)
        return record

    def _time(self, record: dict) -> None:
        """The quick latency beside float32. A device lost meanwhile leaves the record untimed, carried on the
        error so the leaderboard keeps the built file and ``--resume`` only times it."""
        from edgecls.errors import DeviceError

        try:
            latency, ratio = self.timer.quick(record["variant"])
        except DeviceError as err:
            err.untimed_record = record
            raise
        record.update(latency_ms=latency, latency_vs_float32=ratio, where=dict(self.timer.where))


def same_place(a: dict | None, b: dict | None) -> bool:
    """Whether two ``where`` records name one machine (the same target and CPU), so a latency of one stands for the other."""
    keys = ("on", "cpu", "cpu_flags", "machine")
    return bool(a) and bool(b) and all(a.get(k) == b.get(k) for k in keys)


def plain(settings: dict) -> dict:
    return json.loads(json.dumps(settings, default=str))


def _describe(ctx, candidate, path: Path, accuracy: dict, extra: dict) -> tuple[dict, dict]:
    """The candidate's sidecar, and its partitions, float-op count, integer or not, notes."""
    from edgecls.converters.publishing import describe

    optimize = {"family": candidate.family, "settings": plain(candidate.settings), **extra}
    described = describe(ctx, path, candidate.variant, accuracy, {"optimize": optimize})
    notes = [note for note in described.notes() if not note.endswith("XNNPACK partition(s)")]
    if candidate.settings.get("float_ops"):
        notes.append(f"{len(candidate.settings['float_ops'])} op(s) kept float")
    return described.sidecar, {
        "partitions": described.partitions,
        "float_ops": len(described.float_ops) if described.integer and described.partitions is not None else None,
        "integer": described.integer, "notes": "; ".join(notes)}


def publish_best(folder: RunFolder, chosen: dict | None, runtime: str, *, objective: str, max_drop: float,
                  float_val: float, threads: int, where: dict | None = None) -> Path | None:
    """Copy the chosen file to exports/best.<ext> with best.json saying why; None when nothing fits."""
    from edgecls import formats
    from edgecls.publish import publish
    from edgecls.sidecar import read_sidecar, sidecar_path

    target = folder.exports / f"best{formats.FORMATS[runtime].suffix}"
    if chosen is None:
        # A best model left by an earlier search would now be a claim this search did not make.
        previous = read_sidecar(target) if target.is_file() and sidecar_path(target).is_file() else None
        if previous and previous.get("model_file") == target.name and "optimize" in previous:
            target.unlink()
            sidecar_path(target).unlink()
        return None
    source = Path(chosen["path"])
    sidecar = read_sidecar(source) or {}
    why = (f"the {'fastest' if objective == 'latency' else 'smallest (gzip)'} candidate whose validation top-1 "
           f"is within {max_drop:g} pt (absolute) of the float model's {float_val:.4f}")
    sidecar.update(model_file=target.name, optimize={
        **sidecar.get("optimize", {}), "chosen": chosen["variant"], "why": why, "objective": objective,
        "max_drop_pt": max_drop, "val_drop_pt": chosen["val_drop_pt"], "val_accuracy": chosen["val_accuracy"],
        "test_accuracy": chosen["test_accuracy"], "latency_ms": chosen["latency_ms"], "threads": threads,
        "latency_where": chosen.get("where") or where,
        "gzip_bytes": chosen["gzip_bytes"], "leaderboard": str(folder.optimize / "leaderboard.json")})
    publish(target, lambda tmp: shutil.copyfile(source, tmp), lambda tmp: sidecar)  # the why goes inside best.* too
    return target
