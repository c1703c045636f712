"""The finalists: the best trials by validation, compressed by ``edgecls optimize``, and the one chosen.

Each finalist's run folder goes through the optimize search on the same target (host or
``--device``, same threads); every variant it measured is a candidate. The choice is the highest
validation top-1 among the candidates that meet every limit where they were timed (ties: the
faster); test top-1 is carried to be reported, never read to choose. When no finalist has a
candidate within the limits, the next trials by validation are compressed too, up to twice the
number of finalists. The same rule, at other latency limits, answers several budgets from one search: for each
limit no finalist's variant meets, the best trial by validation whose untrained latency meets it is compressed too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edgecls.architecture_search.feasibility import Limits

FINALIST_MAX_DROP = 1.0  # optimize's own budget (pt below each finalist's float model): the limits choose here
LATENCY_CHECK_TOLERANCE = 0.10
CANDIDATE_KEYS = ("variant", "format", "family", "path", "val_accuracy", "test_accuracy", "latency_ms", "size_bytes",
                  "gzip_bytes", "integer", "where", "partitions")


def ranked(trials: list[dict]) -> list[dict]:
    """Trials that trained (complete or pruned) and left a model, best validation top-1 first."""
    done = [t for t in trials if t["state"] in ("complete", "pruned") and t.get("val_accuracy") is not None
            and t.get("run") and (Path(t["run"]) / "model.keras").is_file()]
    return sorted(done, key=lambda t: (-t["val_accuracy"], t["number"]))


def compress(trial: dict, *, threads: int, device, device_python: str, ssh_config, verbose: int,
             optimize_options: dict) -> list[dict]:
    """Run optimize on the trial's folder; its leaderboard's variants as candidates of this search."""
    from edgecls import run_lock
    from edgecls.searching.variant_search import optimize_run

    with run_lock.writing(Path(trial["run"])):
        # resume: a search resumed after its finalists began keeps the candidates already measured (same model bytes).
        result = optimize_run(trial["run"], max_drop=FINALIST_MAX_DROP, objective="latency", threads=threads, resume=True,
                              device=device, device_python=device_python, ssh_config=ssh_config,
                              verbose=max(0, verbose - 1), **optimize_options)
    return [{**{k: record.get(k) for k in CANDIDATE_KEYS}, "trial": trial["number"], "config": trial["config"],
             "run": trial["run"]} for record in result.leaderboard]


def choose(candidates: list[dict], limits: Limits) -> dict | None:
    """The highest validation top-1 among candidates meeting ``limits`` (ties: lower latency); None if none does.
    Reads ``val_accuracy``, ``latency_ms`` and ``size_bytes`` only: never the test split."""
    meeting = [c for c in candidates if limits.meets(c.get("latency_ms"), c["size_bytes"])]
    if not meeting:
        return None
    return max(meeting, key=lambda c: (c["val_accuracy"], -c["latency_ms"]))


def closest(candidates: list[dict], limits: Limits) -> dict | None:
    """When nothing meets the limits: the candidate that misses them by the least (latency, then size, as ratios)."""
    timed = [c for c in candidates if c.get("latency_ms") is not None]

    def excess(c):
        size = c["size_bytes"] / 1024 / limits.max_size_kb if limits.max_size_kb else 0.0
        return max(c["latency_ms"] / limits.max_latency_ms, size)

    return min(timed, key=excess, default=None)


def compress_finalists(trials: list[dict], count: int, limits: Limits, *, say, **options) -> tuple[list[dict], list[dict]]:
    """(the finalists compressed, every candidate they gave), going down the ranking while none meets the limits."""
    order = ranked(trials)
    finalists, candidates = [], []
    for trial in order:
        enough = len(finalists) >= count and choose(candidates, limits) is not None
        if enough or len(finalists) >= 2 * count:
            break
        say(f"finalist {len(finalists) + 1}: trial {trial['number']} ({trial['config']['key']}, val top-1 "
            f"{trial['val_accuracy']:.4f}) through optimize")
        found = compress(trial, **options)
        finalists.append(trial)
        candidates.extend(found)
    return finalists, candidates


def untrained_latency(trial: dict, max_size_kb: float | None) -> float | None:
    """The lowest latency the trial's configuration was timed at untrained, in a format within the size limit."""
    formats = (trial.get("untrained") or {}).values()
    times = [f["latency_ms"] for f in formats if f.get("latency_ms") is not None
             and (max_size_kb is None or f["size_bytes"] / 1024 <= max_size_kb)]
    return min(times, default=None)


def for_other_limits(trials: list[dict], candidates: list[dict], latency_limits: list[float],
                     max_size_kb: float | None) -> list[tuple[float, dict]]:
    """(limit, trial) for each limit no candidate meets: the best trial by validation, not compressed yet, whose
    untrained latency meets it (none when no trained trial's does). Validation only, as :func:`choose`."""
    compressed = {c["trial"] for c in candidates}
    picks = []
    for limit in sorted(set(latency_limits)):
        if choose(candidates, Limits(limit, max_size_kb)) is not None:
            continue
        for trial in ranked(trials):
            ms = untrained_latency(trial, max_size_kb)
            if trial["number"] not in compressed and ms is not None and ms <= limit:
                picks.append((limit, trial))
                compressed.add(trial["number"])
                break
    return picks


def compress_for_limits(trials: list[dict], candidates: list[dict], latency_limits: list[float],
                        max_size_kb: float | None, *, say, **options) -> tuple[list[dict], list[dict]]:
    """(the trials compressed, their candidates) so that each of ``latency_limits`` is answered by a model trained
    for it, not only by the finalists' variants; a limit met by the first such trial stops the ones above it."""
    compressed, found = [], []
    for limit, trial in for_other_limits(trials, candidates, latency_limits, max_size_kb):
        if choose(candidates + found, Limits(limit, max_size_kb)) is not None:
            continue
        say(f"for {limit:g} ms: trial {trial['number']} ({trial['config']['key']}, val top-1 "
            f"{trial['val_accuracy']:.4f}) through optimize")
        compressed.append(trial)
        found.extend(compress(trial, **options))
    return compressed, found


def latency_check(finalists: list[dict], candidates: list[dict], feasibility: dict[str, dict], *, make_timer,
                  images_at) -> list[dict]:
    """Untrained (feasibility) against trained latency of each finalist's int8 and float32, timed side by side."""
    rows = []
    for trial in finalists:
        key = trial["config"]["key"]
        untrained = feasibility.get(key, {}).get("formats", {})
        trained = {c["variant"]: c for c in candidates if c["trial"] == trial["number"]}
        pairs = [(fmt, untrained[fmt]["path"], trained[fmt]["path"]) for fmt in ("int8", "float32")
                 if fmt in untrained and fmt in trained and Path(untrained[fmt]["path"]).is_file()]
        if not pairs:
            continue
        timer = make_timer(images_at(trial["config"]["img_size"]))
        for fmt, before, after in pairs:
            timer.add(f"untrained {fmt}", Path(before))
            timer.add(f"trained {fmt}", Path(after))
        timed = timer.time([n for fmt, _, _ in pairs for n in (f"untrained {fmt}", f"trained {fmt}")],
                           rounds=timer.rounds)
        for fmt, _, _ in pairs:
            before, after = timed[f"untrained {fmt}"]["median_ms"], timed[f"trained {fmt}"]["median_ms"]
            ratio = after / before if before else None
            rows.append({"trial": trial["number"], "config": key, "format": fmt, "untrained_ms": before,
                         "trained_ms": after, "trained_vs_untrained": ratio,
                         "within_10pct": ratio is not None and abs(ratio - 1) <= LATENCY_CHECK_TOLERANCE,
                         "where": dict(timer.where)})
    return rows


def retime(candidates: list[dict], *, make_timer, images_at, reference: Path | None = None) -> float | None:
    """Every finalist's candidates timed again in one interleaved loop (with ``reference``, the model the limit is
    set by), so the choice compares latencies taken side by side rather than finalist by finalist, minutes apart.
    Updates each candidate's ``latency_ms`` (optimize's own figure kept as ``finalist_latency_ms``); returns the
    reference's latency in the same loop (None without one)."""
    from edgecls.errors import EdgeclsError

    timed = [c for c in candidates if c.get("latency_ms") is not None and Path(c["path"]).is_file()]
    if not timed:
        return None
    timer = make_timer(images_at(timed[0]["config"]["img_size"]))
    names = {}
    for c in timed:
        name = f"trial {c['trial']} {c['variant']}"
        try:
            timer.add(name, Path(c["path"]))
        except EdgeclsError:  # a format the target cannot run (ONNX on a device): it keeps optimize's figure
            continue
        names[name] = c
    if reference is not None:
        timer.add("reference", Path(reference))
    order = list(names) + (["reference"] if reference is not None else [])
    result = timer.time(order, rounds=timer.rounds)
    for name, c in names.items():
        c["finalist_latency_ms"] = c["latency_ms"]
        c["latency_ms"] = result[name]["median_ms"]
        c["latency_measured"] = f"interleaved over {len(order)} models of every finalist, on {timer.where['on']}"
        c["where"] = dict(timer.where)
    return result["reference"]["median_ms"] if reference is not None else None


def time_reference(path: Path, *, make_timer, images_at) -> float:
    """The latency of the model the limit is set by (``as_fast_as``), on the target, before any work."""
    from edgecls.deploy.runtimes import open_model

    size = open_model(Path(path), quiet=True).input_size[0]
    timer = make_timer(images_at(size))
    timer.add("reference", Path(path))
    return timer.time(["reference"], rounds=timer.rounds)["reference"]["median_ms"]


def publish_best(out: Path, chosen: dict, limits: Limits, why: str) -> Path:
    """Copy the chosen file to ``OUT/exports/best.<ext>`` with ``best.json``: its sidecar plus why it was chosen."""
    from edgecls.publish import publish
    from edgecls.sidecar import read_sidecar

    source = Path(chosen["path"])
    target = out / "exports" / f"best{source.suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    sidecar = read_sidecar(source) or {}
    sidecar.update(model_file=target.name, search={
        "why": why, "limits": limits.to_dict(), "trial": chosen["trial"], "config": chosen["config"],
        "variant": chosen["variant"], "run": chosen["run"], "val_accuracy": chosen["val_accuracy"],
        "test_accuracy": chosen["test_accuracy"], "latency_ms": chosen["latency_ms"], "size_bytes": chosen["size_bytes"],
        "latency_where": chosen.get("where"), "search_json": str(out / "search.json")})
    publish(target, lambda tmp: shutil.copyfile(source, tmp), lambda tmp: sidecar)
    return target


def remove_stale_best(out: Path) -> None:
    """A best model left by an earlier search of this folder would be a claim this search did not make."""
    for path in (out / "exports").glob("best.*") if (out / "exports").is_dir() else ():
        path.unlink()


def by_latency_limit(candidates: list[dict], latency_limits: list[float], max_size_kb: float | None) -> list[dict]:
    """For each latency limit: the candidate the choice rule picks under it (None when none fits)."""
    rows = []
    for limit in sorted(set(latency_limits)):
        best = choose(candidates, Limits(limit, max_size_kb))
        rows.append({"max_latency_ms": limit, "max_size_kb": max_size_kb,
                     "best": None if best is None else {k: best.get(k) for k in
                                                        ("trial", "variant", "val_accuracy", "test_accuracy",
                                                         "latency_ms", "size_bytes", "path")}
                     | ({"config": best["config"]["key"]} if best else {})})
    return rows


def plot_front(path: Path, trials: list[dict], candidates: list[dict], chosen: dict | None, limits: Limits) -> Path:
    """Validation top-1 against latency: every finalist's variants (trained, as timed on the target), the other
    trials at their untrained int8 latency (hollow), the Pareto front of the trained ones, the limit, the choice ringed."""
    from matplotlib.figure import Figure

    from edgecls.searching.leaderboard import pareto_front
    from edgecls.training.evaluation_reports import save_figure

    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.add_subplot()
    compressed = {c["trial"] for c in candidates}
    others = [(t["untrained"]["int8"]["latency_ms"], t["val_accuracy"], t["config"]["key"]) for t in trials
              if t["number"] not in compressed and t.get("val_accuracy") is not None
              and (t.get("untrained") or {}).get("int8", {}).get("latency_ms") is not None]
    if others:
        ax.scatter([o[0] for o in others], [o[1] * 100 for o in others], facecolors="none", edgecolors="tab:grey",
                   label="other trials (untrained int8 latency)")
    timed = [c for c in candidates if c.get("latency_ms") is not None]
    for c in timed:
        meets = limits.meets(c["latency_ms"], c["size_bytes"])
        ax.scatter(c["latency_ms"], c["val_accuracy"] * 100, color="tab:green" if meets else "tab:orange",
                   edgecolors="black", linewidths=0.5, alpha=0.7)
        ax.annotate(f"{c['config']['key']} {c['variant']}", (c["latency_ms"], c["val_accuracy"] * 100), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    front = pareto_front(timed)
    if front:
        ax.plot([c["latency_ms"] for c in front], [c["val_accuracy"] * 100 for c in front], color="tab:blue",
                linestyle="--", linewidth=0.8, label="Pareto front (finalists' variants)")
    if chosen is not None:
        ax.scatter(chosen["latency_ms"], chosen["val_accuracy"] * 100, s=400, facecolors="none", edgecolors="tab:red",
                   linewidths=2.0, label=f"chosen: {chosen['config']['key']} {chosen['variant']}")
    ax.axvline(limits.max_latency_ms, color="tab:red", linestyle=":", linewidth=0.8,
               label=f"limit {limits.max_latency_ms:g} ms")
    ax.set_xlabel("latency per image (ms, median, interleaved, on the target)")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("edgecls search: validation top-1 against latency\ngreen: meets every limit; orange: misses one",
                 fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=110)


def finalist_line(candidate: dict) -> str:
    return (f"{candidate['config']['key']} {candidate['variant']} (trial {candidate['trial']}): val top-1 "
            f"{candidate['val_accuracy']:.4f}, {candidate['latency_ms']:.3f} ms, {candidate['size_bytes'] / 1024:,.0f} KB")
