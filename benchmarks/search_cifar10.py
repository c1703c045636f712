"""`edgecls search` on CIFAR-10 against the shipped `cifar10_mobilenet_v3_small` recipe, on this host.

The question a user asks: "it must be at least as fast as the model I have; what is the most
accurate model I can get instead?" This script

  1. takes the recipe's model (a run folder trained with the shipped recipe, ``--recipe-run``,
     checked to be that recipe; or trains one) and its int8 TFLite export's test top-1,
  2. times that int8 model on this host, 1 thread: its median is the search's latency limit,
  3. times two epochs of the resnet9 reference recipe, as ``benchmarks/cifar10.py`` does, and
     scales the search's time budget by it: ``--reference-minutes`` (at most 60) where the
     reference runs at 50.9 s per epoch,
  4. runs ``edgecls.search`` with that limit, that budget and the space in
     ``benchmarks/configs/search_cifar10.yaml``, and also names the best model under 0.5× and 2×
     the limit,
  5. times the recipe's int8 and each pick again, side by side in one interleaved loop (each model
     fed its own input size), and reports test top-1 beside validation (the search chose on
     validation only), the Pareto front and the untrained-vs-trained latency check.

    python benchmarks/search_cifar10.py --data ../shared/datasets/cifar10.tar.gz \\
        --recipe-run /tmp/c10/runs/cifar10_mobilenet_v3_small --work /tmp/search_cifar10 --reference-minutes 30
    python benchmarks/search_cifar10.py --render-only
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine_record import machine, text  # noqa: E402
from result_files import add_arguments, write_or_render  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "search_cifar10"
SPACE = ROOT / "benchmarks" / "configs" / "search_cifar10.yaml"
RECIPE = "cifar10_mobilenet_v3_small"
REFERENCE_EPOCH_SECONDS = 50.9  # benchmarks/cifar10.py: the resnet9 reference's epoch where the budgets were set
MOST_REFERENCE_MINUTES = 60
TIMING = {"rounds": 7, "runs": 50, "warmup": 10}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="CIFAR-10 (train/ and test/ folders) or its archive (required unless --render-only)")
    parser.add_argument("--recipe-run", type=Path, help=f"a run trained with the shipped {RECIPE} recipe (default: train one)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/search_cifar10"), help="the search folder and the runs")
    parser.add_argument("--cache", type=Path, help="the decoded-image cache shared with other runs (default: WORK/cache)")
    parser.add_argument("--reference-minutes", type=float, default=MOST_REFERENCE_MINUTES,
                        help=f"search time where the reference epoch takes {REFERENCE_EPOCH_SECONDS} s (at most "
                             f"{MOST_REFERENCE_MINUTES})")
    parser.add_argument("--reference-epochs", type=int, default=2)
    parser.add_argument("--budget-seconds", type=float, help="a fixed search budget instead of the scaled one (smoke runs)")
    parser.add_argument("--space", type=Path, default=SPACE)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="continue the search in WORK/search")
    add_arguments(parser, RESULTS / "search_cifar10")
    args = parser.parse_args(argv)
    if args.data is None and not args.render_only:
        parser.error("--data is required (unless --render-only)")
    if not 0 < args.reference_minutes <= MOST_REFERENCE_MINUTES:
        parser.error(f"--reference-minutes must be more than 0 and at most {MOST_REFERENCE_MINUTES}")
    return args


def say(message: str) -> None:
    print(f"[search_cifar10 {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def recipe_model(args) -> dict:
    """The recipe's run folder and its int8 export: path, test top-1 (from its sidecar), size."""
    import json

    import edgecls
    from edgecls import config as cfg

    run = args.recipe_run
    shipped = cfg.from_dict(cfg.load_yaml(RECIPE), source=RECIPE)
    if run is None:
        config = cfg.from_dict(cfg.load_yaml(RECIPE), source=RECIPE)
        config.data.path, config.data.cache_dir = str(args.data), str(cache_dir(args))
        run = args.work / "runs" / RECIPE
        if not (run / "model.keras").is_file():
            say(f"training the {RECIPE} recipe into {run}")
            edgecls.train(out=run, config=config, resume=(run / "state.json").is_file())
    trained = cfg.load_yaml(str(run / "config.yaml"))
    for section, key in (("model", "arch"), ("model", "alpha"), ("data", "img_size"), ("train", "epochs"),
                         ("train", "lr"), ("train", "batch_size")):
        if trained[section][key] != getattr(getattr(shipped, section), key):
            raise SystemExit(f"error: {run} was not trained with the shipped {RECIPE} recipe "
                             f"({section}.{key} is {trained[section][key]!r})")
    int8 = run / "exports" / "int8.tflite"
    if not int8.is_file():
        say(f"quantizing {run} to int8")
        edgecls.quantize(run, int8=True)
    sidecar = json.loads((run / "exports" / "int8.json").read_text())
    if sidecar["accuracy"]["split"] != "test":
        raise SystemExit(f"error: {int8}'s accuracy was not measured on the test split")
    return {"run": str(run), "path": str(int8), "img_size": shipped.data.img_size,
            "test_accuracy": sidecar["accuracy"]["top1"], "float_test_accuracy": sidecar["accuracy"].get("float_top1"),
            "size_bytes": int8.stat().st_size, "epochs": shipped.train.epochs}


def cache_dir(args) -> Path:
    return args.cache or args.work / "cache"


def images(args, size: int, count: int = 8):
    """A few test images at ``size`` for timing (latency does not depend on which)."""
    from edgecls.data.decode import decode_split
    from edgecls.data.layout import find_dataset

    files = find_dataset(args.data, fractions={"train": 0.8, "val": 0.1, "test": 0.1}, seed=0, cache_root=cache_dir(args))
    paths, labels = files.splits["test"]
    return decode_split(paths[:count], labels[:count], size, cache_root=cache_dir(args), progress=False).images


def side_by_side(models: dict[str, tuple[str, object]], threads: int) -> dict[str, dict]:
    """Each model's latency on its own input, all in one interleaved loop (the search's timing settings)."""
    from edgecls.deploy.runtimes import open_model
    from edgecls.timing import interleaved_latency

    calls = {}
    for name, (path, batch) in models.items():
        runtime = open_model(Path(path), threads=threads, quiet=True)
        prepared = runtime.prepare(batch[:1])
        calls[name] = (lambda r, p: lambda: r.invoke(p))(runtime, prepared)
    timed = interleaved_latency(calls, **TIMING)
    return {name: {"median_ms": e["median_ms"], "p90_ms": e["latency_ms"]["p90"], "spread_pct": e["spread_pct"]}
            for name, e in timed.items()}


def time_reference(args) -> dict:
    import cifar10

    reference = argparse.Namespace(data=args.data, out=args.work / "reference", reference_epochs=args.reference_epochs)
    timed = cifar10.time_reference(reference)
    seconds = args.reference_minutes * 60 * timed["reference_epoch_seconds"] / REFERENCE_EPOCH_SECONDS
    return {**timed, "budget_seconds": round(seconds, 1),
            "rule": f"{args.reference_minutes:g} min x the faster of {len(timed['epoch_seconds'])} reference epochs / "
                    f"{REFERENCE_EPOCH_SECONDS} s"}


def search_settings(args, recipe: dict, recipe_images) -> tuple[dict, dict]:
    """(the budget scaled by this machine's reference epochs, the recipe int8 timed alone), kept in
    WORK/settings.json: a --resume continues the search they were set for (timing them again would give the resumed
    search another budget and another --also-latency-ms)."""
    import json

    from edgecls.fsutil import write_json

    path = args.work / "settings.json"
    if args.resume and path.is_file():
        kept = json.loads(path.read_text())
        return kept["budget"], kept["limit"]
    if args.resume and args.out.with_suffix(".json").is_file():  # a search measured before settings.json was kept
        earlier = json.loads(args.out.with_suffix(".json").read_text())
        started = json.loads((args.work / "search" / "search.json").read_text())
        if earlier["budget"]["budget_seconds"] == started["time_budget_seconds"]:
            write_json(path, {"budget": earlier["budget"], "limit": earlier["recipe"]["latency"]})
            return earlier["budget"], earlier["recipe"]["latency"]
    limit = side_by_side({"recipe int8": (recipe["path"], recipe_images)}, args.threads)["recipe int8"]
    budget = time_reference(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"budget": budget, "limit": limit})
    return budget, limit


def effective_space(args) -> Path:
    """The committed space with this machine's image cache: what the search reads."""
    import yaml

    from edgecls.config import load_yaml
    from edgecls.fsutil import write_text

    space = load_yaml(str(args.space))
    space.setdefault("data", {})["cache_dir"] = str(cache_dir(args))
    path = args.work / "space.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, yaml.safe_dump(space, sort_keys=False))
    return path


def measure(args) -> dict:
    import json

    import edgecls

    started = time.monotonic()
    recipe = recipe_model(args)
    recipe_images = images(args, recipe["img_size"])
    budget, limit = search_settings(args, recipe, recipe_images)
    say(f"{RECIPE} int8: {limit['median_ms']:.4f} ms on this host ({args.threads} thread): the latency limit; "
        f"test top-1 {recipe['test_accuracy']:.4f}")
    if args.budget_seconds is not None:
        budget = {**budget, "budget_seconds": args.budget_seconds, "rule": f"fixed by --budget-seconds {args.budget_seconds:g}"}
    say(f"search budget {budget['budget_seconds'] / 60:.1f} min ({budget['rule']})")
    # The limit is the recipe's int8 itself (as_fast_as): the search times it with every finalist variant in one
    # loop and chooses on those figures. 2x the latency measured above keeps configurations up to twice as slow.
    result = edgecls.search(args.data, args.work / "search", as_fast_as=recipe["path"], threads=args.threads,
                            time_budget=budget["budget_seconds"], space=effective_space(args), resume=args.resume,
                            also_latency_ms=[2 * limit["median_ms"]])
    search = json.loads((result.out_dir / "search.json").read_text())
    from edgecls.architecture_search.finalists import by_latency_limit

    limit_ms = (search["reference"] or {}).get("latency_ms_final") or search["limits"]["max_latency_ms"]
    rows = by_latency_limit(search["candidates"], [limit_ms / 2, limit_ms, 2 * limit_ms], None)
    by_path = {c["path"]: c for c in search["candidates"]}
    picks = {f"{row['max_latency_ms'] / limit_ms:g}x": None if row["best"] is None else by_path[row["best"]["path"]]
             for row in rows}
    timed_models = {"recipe int8": (recipe["path"], recipe_images)}
    for name, best in picks.items():
        if best is not None:
            size = best["config"]["img_size"]
            timed_models[f"pick under {name}"] = (best["path"], recipe_images if size == recipe["img_size"]
                                                  else images(args, size))
    final = side_by_side(timed_models, args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if (result.out_dir / "pareto.png").is_file():
        shutil.copyfile(result.out_dir / "pareto.png", args.out.parent / "pareto.png")
    return {
        "benchmark": "search_cifar10", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(), "threads": args.threads, "versions": _versions(), "space_file": _shown(args.space),
        "recipe": {**recipe, "latency": limit, "name": RECIPE}, "limit_ms": limit_ms, "budget": budget,
        "search": {k: search[k] for k in ("limits", "reference", "where", "space", "time_budget_seconds", "stop_reason", "seconds",
                                          "feasible", "dropped", "chosen", "by_latency_limit", "latency_check",
                                          "trials", "candidates")},
        "feasibility": json.loads((result.out_dir / "feasibility.json").read_text()).get("configurations"),
        "picks": picks, "side_by_side": final, "seconds": round(time.monotonic() - started, 1), "resumed": args.resume,
    }


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("tensorflow", "ai-edge-litert", "optuna")}


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f} %"


def markdown(r: dict) -> str:
    recipe, final, limit = r["recipe"], r["side_by_side"], r["limit_ms"]
    s = r["search"]
    lines = [
        "# `edgecls search` on CIFAR-10 against the shipped recipe",
        "",
        f"Machine: {text(r['machine'])}; {r['threads']} thread; " + ", ".join(f"{k} {v}" for k, v in r["versions"].items())
        + f". {r['date']}. Written by `benchmarks/search_cifar10.py` (space `{r['space_file']}`).",
        "",
        f"Latency limit: the `{recipe['name']}` recipe's int8 TFLite model ({recipe['epochs']} epochs, "
        f"{recipe['img_size']} px; test top-1 {_pct(recipe['test_accuracy'])}), given to the search as `as_fast_as`: "
        f"timed before feasibility at {_ms_text((s.get('reference') or {}).get('latency_ms_start'))} and with every "
        f"finalist variant in one loop at **{limit:.4f} ms**, the limit the choice used (alone, before the search: "
        f"{recipe['latency']['median_ms']:.4f} ms). "
        f"Search time budget {r['budget']['budget_seconds'] / 60:.1f} min ({r['budget']['rule']}; reference epochs "
        f"{', '.join(f'{x:.1f}' for x in r['budget']['epoch_seconds'])} s); the search took "
        f"{s['seconds'].get('feasibility', 0) / 60:.1f} min of feasibility, {s['seconds'].get('training', 0) / 60:.1f} min "
        f"of training ({s['stop_reason']}) and {s['seconds'].get('finalists', 0) / 60:.1f} min compressing finalists. "
        f"{s['feasible']} configurations feasible, {s['dropped']} dropped before training."
        + (" The search was continued with `--resume` (same budget, counted across sessions; the seconds are "
           "both sessions' sums)." if r.get("resumed") else ""),
        "",
        "## The pick against the recipe, timed side by side",
        "",
        "| model | configuration | variant | val top-1 | test top-1 | vs recipe int8 (test) | median ms | vs recipe ms | size KB |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| recipe int8 | {recipe['name']} | int8 | — | {_pct(recipe['test_accuracy'])} | — | "
        f"{final['recipe int8']['median_ms']:.4f} | 1.00× | {recipe['size_bytes'] / 1024:,.0f} |",
    ]
    for name, best in r["picks"].items():
        row = final.get(f"pick under {name}")
        if best is None or row is None:
            lines.append(f"| best under {name} the limit | no candidate met it | | | | | | | |")
            continue
        gain = None if best.get("test_accuracy") is None else 100 * (best["test_accuracy"] - recipe["test_accuracy"])
        lines.append(f"| best under {name} the limit ({best['latency_ms']:.4f} ms in the search) | {best['config']['key']} | "
                     f"{best['variant']} | {_pct(best['val_accuracy'])} | {_pct(best.get('test_accuracy'))} | "
                     + ("—" if gain is None else f"{gain:+.2f} pt") + f" | {row['median_ms']:.4f} | "
                     f"{row['median_ms'] / final['recipe int8']['median_ms']:.2f}× | {best['size_bytes'] / 1024:,.0f} |")
    chosen = r["picks"].get("1x")
    if chosen is not None and chosen.get("test_accuracy") is not None:
        gain = 100 * (chosen["test_accuracy"] - recipe["test_accuracy"])
        ratio = final["pick under 1x"]["median_ms"] / final["recipe int8"]["median_ms"]
        verdict = "met" if gain >= 2 and ratio <= 1 else "NOT met"
        lines += ["", f"Target (+2 pt test top-1 at the recipe's int8 latency or less): **{verdict}** "
                      f"({gain:+.2f} pt at {ratio:.2f}× the recipe's latency, side by side)."]
    else:
        lines += ["", "Target (+2 pt test top-1 at the recipe's int8 latency or less): **NOT met** (nothing under the limit)."]
    lines += ["", "![validation top-1 against latency](pareto.png)", "",
              "## Every trial (chosen on validation; test reported only)", "",
              "| trial | configuration | lr | state | epochs | val top-1 | test top-1 | untrained int8 ms | why |",
              "|---|---|---|---|---|---|---|---|---|"]
    for t in s["trials"]:
        int8 = (t.get("untrained") or {}).get("int8", {}).get("latency_ms")
        lines.append(f"| {t['number']} | {t['config'].get('key')} | {_lr(t['lr_scale'])} | "
                     f"{t['state']} | {t['epochs'] or ''} | {_pct(t['val_accuracy'])} | {_pct(t['test_accuracy'])} | "
                     f"{'' if int8 is None else f'{int8:.4f}'} | {t['why'] or ''} |")
    lines += ["", "## Feasibility (untrained, BatchNorm statistics from training images)", "",
              "| configuration | int8 ms | int8 KB | float32 ms | feasible | why |", "|---|---|---|---|---|---|"]
    for f in r["feasibility"] or []:
        fmts = f.get("formats", {})
        i8, f32 = fmts.get("int8", {}), fmts.get("float32", {})
        lines.append(f"| {f['config']['key']} | {_ms(i8)} | {_kb(i8)} | {_ms(f32)} | {'yes' if f['feasible'] else 'no'} | "
                     f"{f.get('why') or ''} |")
    lines += ["", "## Untrained against trained latency (the finalists, timed side by side)", "",
              "| configuration | format | untrained ms | trained ms | trained / untrained | within 10 % |", "|---|---|---|---|---|---|"]
    for c in s["latency_check"]:
        lines.append(f"| {c['config']} | {c['format']} | {c['untrained_ms']:.4f} | {c['trained_ms']:.4f} | "
                     f"{c['trained_vs_untrained']:.2f}× | {'yes' if c['within_10pct'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def _ms_text(value) -> str:
    return "—" if value is None else f"{value:.4f} ms"


def _lr(scale) -> str:
    return "" if scale is None else f"×{scale:g}"


def _ms(f: dict) -> str:
    return "" if f.get("latency_ms") is None else f"{f['latency_ms']:.4f}"


def _kb(f: dict) -> str:
    return "" if f.get("size_bytes") is None else f"{f['size_bytes'] / 1024:,.0f}"


def main(argv=None) -> None:
    args = parse_args(argv)
    print(write_or_render(args.out, args.render_only, lambda: measure(args), markdown))


if __name__ == "__main__":
    main()
