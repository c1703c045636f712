"""`edgecls optimize` with the latency taken on the host against the same search timed on a device.

For each run folder (the CIFAR-10 runs of ``benchmarks/results/optimize_cifar10/``, trained by
``benchmarks/cifar10.py``) this script
  1. runs ``edgecls optimize RUN --max-drop 0.5 --time-budget 15m`` on the host,
  2. runs it again with ``--device DEVICE --resume``: the candidates the host search built are
     the same bytes, so they are not rebuilt, only timed again on the device (and any candidate
     the device's latencies make worth trying is built and measured),
  3. puts the two leaderboards side by side: every candidate's latency and its ratio to float32
     on each machine, what each search chose, and whether the choice differs.

Without ``--device`` the device is an emulated Raspberry Pi 4: a loopback OpenSSH server
(``tests/ssh_device.py``) whose Python is Raspberry Pi OS Bookworm's arm64 python3.11 under
``qemu-aarch64 -cpu cortex-a72`` (``benchmarks/pi_emulation.py``, stack b: ai-edge-litert).
**Emulated timings are not Pi timings**: qemu translates every Arm instruction, so the ratios say
which kernels XNNPACK picks for a Cortex-A72's instruction set, not how fast a Pi runs them. On a
real Pi, give ``--device ssh://pi@raspberrypi.local`` (and ``--device-python`` for a venv).
It also records ``edgecls device check`` of the host and of the device.

    python benchmarks/device_loop.py --runs /tmp/c10/runs/cifar10_mobilenet_v3_small \\
        /tmp/c10/runs/cifar10_efficientnet_b0 /tmp/c10/runs/cifar10_resnet9 --out benchmarks/results/device_loop
    python benchmarks/device_loop.py --out benchmarks/results/device_loop --render-only
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from machine_record import machine  # noqa: E402
from result_files import add_arguments, write_or_render  # noqa: E402

from edgecls.devices.machine_probe import where_text  # noqa: E402

WORK = Path.home() / ".cache" / "edgecls" / "pi-emulation"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, help="run folders to search (required unless --render-only)")
    parser.add_argument("--device", help="a real device (ssh://[user@]host[:port] or an ssh alias); "
                                         "default: the emulated Pi 4 on a loopback sshd")
    parser.add_argument("--device-python", default="python3")
    parser.add_argument("--ssh-config", type=Path)
    parser.add_argument("--stack", default="b", help="the emulated device's stack (pi_emulation.py: a or b)")
    parser.add_argument("--cpu", default="cortex-a72", help="the emulated device's core (qemu -cpu)")
    parser.add_argument("--work", type=Path, default=WORK, help="pi_emulation.py's download folder")
    parser.add_argument("--max-drop", type=float, default=0.5)
    parser.add_argument("--time-budget", default="15m")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device-rounds", type=int, help="interleaved rounds of the device's timing "
                                                          "(default: optimize's 7; 3 on the emulated device)")
    parser.add_argument("--device-runs", type=int, help="runs per round there (default: optimize's 40; 5 emulated)")
    add_arguments(parser, ROOT / "benchmarks" / "results" / "device_loop")
    args = parser.parse_args(argv)
    if not args.render_only and not args.runs:
        parser.error("give --runs RUN... (or --render-only)")
    return args


class Target:
    """The device the second search times on: the one given, or an emulated Pi 4 started here."""

    def __init__(self, args, folder: Path):
        self.args, self.folder, self.server = args, folder, None

    def __enter__(self) -> dict:
        args = self.args
        if args.device:
            return {"device": args.device, "device_python": args.device_python, "ssh_config": args.ssh_config,
                    "emulated": None}
        import pi_emulation
        from ssh_device import sshd_unavailable, start_sshd

        reason = sshd_unavailable()
        if reason:
            raise SystemExit(f"error: the emulated device needs a loopback sshd: {reason}")
        self.server = start_sshd(self.folder / "sshd")
        python = pi_emulation.emulated_device_python(args.work, args.stack, self.folder / "bin",
                                                     home=self.folder / "device-home", cpu=args.cpu)
        qemu = pi_emulation.run([pi_emulation.qemu(args.work), "--version"]).stdout.splitlines()[0]
        return {"device": "device", "device_python": str(python), "ssh_config": self.server.config,
                "emulated": {"qemu": qemu, "cpu": args.cpu, "stack": pi_emulation.STACKS[args.stack]["name"]}}

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.stop()


def device_timing(args, target: dict) -> dict:
    """The device search's latency measurement: optimize's own, or fewer runs where every instruction is emulated
    (a small CNN's invocation takes about 400× the host's under qemu)."""
    from edgecls.searching.variant_search import DEFAULT_ROUNDS, DEFAULT_RUNS, DEFAULT_WARMUP

    emulated = target["emulated"] is not None
    return {"rounds": args.device_rounds or (3 if emulated else DEFAULT_ROUNDS),
            "runs": args.device_runs or (5 if emulated else DEFAULT_RUNS),
            "warmup": 2 if emulated else DEFAULT_WARMUP}


def search_both(run: Path, target: dict, args) -> dict:
    import edgecls
    from edgecls.searching.variant_search import optimize_run

    common = {"max_drop": args.max_drop, "time_budget": args.time_budget, "threads": args.threads}
    board = run / "exports" / "optimize" / "leaderboard.json"
    started = time.monotonic()
    host = edgecls.optimize(run, **common)
    host_seconds, host_board = time.monotonic() - started, json.loads(board.read_text())
    started = time.monotonic()
    device = optimize_run(run, **common, **device_timing(args, target), resume=True, device=target["device"],
                          device_python=target["device_python"], ssh_config=target["ssh_config"])
    device_seconds, device_board = time.monotonic() - started, json.loads(board.read_text())
    by_variant = {r["variant"]: r for r in device_board["candidates"]}
    rows = []
    for record in host_board["candidates"]:
        there = by_variant.get(record["variant"], {})
        rows.append({"variant": record["variant"], "val_accuracy": record["val_accuracy"],
                     "test_accuracy": record["test_accuracy"], "val_drop_pt": record["val_drop_pt"],
                     "host_ms": record["latency_ms"], "host_vs_float32": record["latency_vs_float32"],
                     "device_ms": there.get("latency_ms"), "device_vs_float32": there.get("latency_vs_float32"),
                     "host_within_budget": record["within_budget"], "device_within_budget": there.get("within_budget")})
    known = {r["variant"] for r in rows}
    rows += [{"variant": r["variant"], "val_accuracy": r["val_accuracy"], "test_accuracy": r["test_accuracy"],
              "val_drop_pt": r["val_drop_pt"], "host_ms": None, "host_vs_float32": None,
              "device_ms": r["latency_ms"], "device_vs_float32": r["latency_vs_float32"],
              "host_within_budget": None, "device_within_budget": r["within_budget"]}
             for r in device_board["candidates"] if r["variant"] not in known]
    return {"run": run.name, "float_val_accuracy": host_board["float_val_accuracy"],
            "float_test_accuracy": host_board["float_test_accuracy"],
            "host_choice": host.chosen["variant"] if host.chosen else None,
            "device_choice": device.chosen["variant"] if device.chosen else None,
            "host_search_seconds": round(host_seconds, 1), "device_search_seconds": round(device_seconds, 1),
            "host_where": host_board["where"], "device_where": device_board["where"],
            "device_rebuilt": sorted(r["variant"] for r in device_board["candidates"] if not r.get("resumed")),
            "candidates": rows}


def measure(args) -> dict:
    import edgecls
    from edgecls.devices.machine_probe import host_description
    from edgecls.sidecar import tool_versions

    with tempfile.TemporaryDirectory(prefix="edgecls-device-loop-") as tmp, Target(args, Path(tmp)) as target:
        checked = edgecls.check_device(target["device"], device_python=target["device_python"],
                                       ssh_config=target["ssh_config"])
        runs = []
        for run in args.runs:
            print(f"== {run}", file=sys.stderr)
            runs.append(search_both(run, target, args))
    return {"benchmark": "device_loop", "date": time.strftime("%Y-%m-%d"), "max_drop_pt": args.max_drop,
            "time_budget": args.time_budget, "threads": args.threads, "machine": machine(),
            "versions": tool_versions(), "host_check": host_description(), "device_check": checked.to_dict(),
            "emulated": target["emulated"], "device_timing": device_timing(args, target), "runs": runs}


def _ms(value) -> str:
    return "–" if value is None else f"{value:.3f} ms"


def _ratio(value) -> str:
    return "–" if value is None else f"{value:.2f}×"


def markdown(result: dict) -> str:
    emulated = result.get("emulated")
    device = result["device_check"]
    host_where = result["runs"][0]["host_where"] if result["runs"] else None
    device_where = result["runs"][0]["device_where"] if result["runs"] else None
    lines = ["# `edgecls optimize`: latency taken on the host vs on the device", "",
             f"{result['date']}. `edgecls optimize RUN --max-drop {result['max_drop_pt']:g} --time-budget "
             f"{result['time_budget']} --threads {result['threads']}` on the host, then the same with "
             "`--device DEVICE --resume` (the host's candidates are the same bytes: only timed again there). "
             "Accuracy is the host's in both (validation chooses; the CIFAR-10 test split is reported only). "
             "Written by `benchmarks/device_loop.py`.", "",
             f"- {where_text(host_where)}",
             f"- {where_text(device_where)}; Python {device['python']}, "
             + ", ".join(f"{k} {v}" for k, v in device["runtimes"].items() if v and k != "pillow")]
    if emulated:
        lines += ["", f"**The device is emulated** ({emulated['qemu']}, `-cpu {emulated['cpu']}`, "
                      f"{emulated['stack']}): Raspberry Pi OS Bookworm's arm64 Python behind a loopback sshd. "
                      "Emulated timings are not Pi timings: qemu translates every instruction, so a ratio here "
                      "shows which kernels XNNPACK picks for that core's instruction set, not a Pi's speed. "
                      "Run this script with `--device ssh://pi@…` on a Pi for real numbers."]
    timing = result.get("device_timing") or {"rounds": 7, "runs": 40}
    differ = [r["run"] for r in result["runs"] if r["host_choice"] != r["device_choice"]]
    lines += ["", "| run | chosen timing on the host | chosen timing on the device | differs | int8 vs fp32 on host | "
                  "int8 vs fp32 on device | searches (host, device) |", "|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        int8 = next((c for c in r["candidates"] if c["variant"] == "int8"), {})
        lines.append(f"| {r['run']} | {r['host_choice'] or 'nothing'} | {r['device_choice'] or 'nothing'} | "
                     f"{'**yes**' if r['host_choice'] != r['device_choice'] else 'no'} | "
                     f"{_ratio(int8.get('host_vs_float32'))} | {_ratio(int8.get('device_vs_float32'))} | "
                     f"{r['host_search_seconds'] / 60:.1f} min, {r['device_search_seconds'] / 60:.1f} min |")
    lines += ["", f"The choice differs on {len(differ)} of {len(result['runs'])} runs"
              + (f" ({', '.join(differ)})." if differ else ".")]
    for r in result["runs"]:
        lines += ["", f"## {r['run']}", "",
                  f"Float top-1: validation {r['float_val_accuracy']:.2%}, test {r['float_test_accuracy']:.2%}. "
                  "Latency: each search's own final interleaved measurement (median of round medians, batch 1; "
                  f"on the device {timing['rounds']} rounds of {timing['runs']} runs, on the host optimize's 7 of 40). "
                  f"Built again for the device search: {', '.join(r['device_rebuilt']) or 'nothing'}.", "",
                  "| variant | val top-1 | val drop | test top-1 | host | vs fp32 | device | vs fp32 | within budget (host, device) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in r["candidates"]:
            mark = "★ " if c["variant"] == r["device_choice"] else ""
            mark += "☆ " if c["variant"] == r["host_choice"] else ""
            lines.append(f"| {mark}{c['variant']} | {c['val_accuracy']:.2%} | {-c['val_drop_pt']:+.2f} pt | "
                         f"{c['test_accuracy']:.2%} | {_ms(c['host_ms'])} | {_ratio(c['host_vs_float32'])} | "
                         f"{_ms(c['device_ms'])} | {_ratio(c['device_vs_float32'])} | "
                         f"{_yes(c['host_within_budget'])}, {_yes(c['device_within_budget'])} |")
        lines.append("")
        lines.append("☆ chosen with host timings, ★ chosen with device timings.")
    return "\n".join(lines) + "\n"


def _yes(value) -> str:
    return "–" if value is None else ("yes" if value else "no")


def main(argv=None) -> int:
    args = parse_args(argv)
    print(write_or_render(args.out, args.render_only, lambda: measure(args), markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
