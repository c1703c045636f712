"""Everything the report template shows, gathered from one run folder."""

from __future__ import annotations

from datetime import datetime, timezone
from importlib import metadata

import yaml

from edgecls.html_report import deploy_sections, run_sections
from edgecls.html_report.formatting import millis, percent, seconds, size
from edgecls.html_report.reading import Notes, as_float, read_json, read_text
from edgecls.run_folder import EVAL, EVAL_ENSEMBLE, RunFolder


def collect(run: RunFolder) -> dict:
    notes = Notes(run.path)
    config_text = read_text(run.config, notes)
    config = _parse_config(config_text, run, notes)
    data_cfg = config.get("data") if isinstance(config.get("data"), dict) else {}
    model_cfg = config.get("model") if isinstance(config.get("model"), dict) else {}
    metrics = read_json(run.metrics, notes)
    metrics = metrics if isinstance(metrics, dict) else None
    data_root = str(data_cfg["path"]) if data_cfg.get("path") else None
    image_size = _image_size(model_cfg, data_cfg, metrics)

    results = run_sections.evaluation_section(run.path, notes, image_size=image_size, data_root=data_root)
    evaluations = []
    for name in (EVAL, EVAL_ENSEMBLE):
        section = run_sections.evaluation_section(run.path / name, notes, image_size=image_size, data_root=None)
        if section is not None:
            section["name"] = name
            evaluations.append(section)
    context = {
        "title": run.path.resolve().name,
        "run_path": str(run.path.resolve()),
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": edgecls_version(),
        "facts": _facts(model_cfg, data_cfg, metrics, image_size),
        "data": run_sections.data_section(run, data_root, notes),
        "training": run_sections.training_section(run, metrics, notes),
        "results": results,
        "evaluations": evaluations,
        "variants": deploy_sections.variants_section(run, metrics, notes),
        "leaderboard": deploy_sections.leaderboard_section(run, notes),
        "bench": deploy_sections.bench_section(run, notes),
        "gradcam": deploy_sections.gradcam_section(run, notes),
        "config_text": config_text,
        "notes": notes.items,
    }
    context["cards"] = _headline(context, metrics)
    context["missing"] = _missing(context)
    return context


def edgecls_version() -> str:
    # From the installed distribution, as the sidecars do: edgecls/__init__.py is the API layer,
    # above this one.
    try:
        return metadata.version("edgecls")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _parse_config(text: str | None, run: RunFolder, notes: Notes) -> dict:
    if text is None:
        return {}
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as err:
        notes.add(run.config, f"not readable as YAML ({str(err).splitlines()[0]})")
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _image_size(model_cfg: dict, data_cfg: dict, metrics: dict | None):
    for value in ((metrics or {}).get("img_size"), data_cfg.get("img_size"), model_cfg.get("img_size")):
        if isinstance(value, int) and value > 0:
            return value
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
            return tuple(value)
    return None


def _facts(model_cfg: dict, data_cfg: dict, metrics: dict | None, image_size) -> list[tuple[str, str]]:
    metrics = metrics or {}
    facts = []
    arch = metrics.get("arch") or model_cfg.get("arch")
    if arch:
        weights = model_cfg.get("weights")
        facts.append(("model", f"{arch}" + (f" (weights: {weights})" if weights else "")))
    if image_size:
        side = image_size if isinstance(image_size, int) else "×".join(str(v) for v in image_size)
        facts.append(("input", f"{side} px" if isinstance(image_size, int) else f"{side} px (h×w)"))
    if data_cfg.get("path"):
        facts.append(("data", str(data_cfg["path"])))
    if metrics.get("split_source"):
        facts.append(("split", str(metrics["split_source"])))
    if as_float(metrics.get("epochs_run")) is not None:
        best = metrics.get("best_epoch")
        facts.append(("epochs", f"{metrics['epochs_run']}" + (f", best at {best}" if best is not None else "")))
    return facts


def _headline(context: dict, metrics: dict | None) -> list[dict]:
    """The few numbers a reader wants before scrolling: accuracy, the device model, speed, cost."""
    cards = []
    metrics = metrics or {}
    if as_float(metrics.get("accuracy")) is not None:
        samples = as_float(metrics.get("num_samples"))
        hint = f"{samples:,.0f} test images" if samples else "test split"
        cards.append({"label": "test top-1", "value": percent(metrics["accuracy"]), "hint": hint})
    if as_float(metrics.get("macro_f1")) is not None:
        cards.append({"label": "macro F1", "value": percent(metrics["macro_f1"]), "hint": "mean over classes"})
    board = context["leaderboard"]
    variants = context["variants"]
    if board and board["chosen"]:
        chosen = board["chosen"]
        cards.append({"label": "chosen by optimize", "value": str(chosen.get("variant", "?")),
                      "hint": f"{percent(chosen.get('test_accuracy'))} test, {size(chosen.get('size_bytes'))}"})
    elif variants and variants["smallest"]:
        small = variants["smallest"]
        cards.append({"label": "smallest export", "value": size(small["size"]),
                      "hint": f"{small['file']}: {percent(small['top1'])} test"})
    bench = context["bench"]
    if bench and bench["fastest"]:
        fast = bench["fastest"]
        cards.append({"label": "fastest p50", "value": f"{millis(fast['p50'])} ms",
                      "hint": f"{fast['name']} ({fast['runtime']}, {fast['threads']} thread(s))"})
    if as_float(metrics.get("train_seconds")) is not None:
        cards.append({"label": "training", "value": seconds(metrics["train_seconds"]),
                      "hint": f"{metrics.get('epochs_run', '?')} epochs"})
    return cards


def _missing(context: dict) -> list[str]:
    """Short hints for the sections this run has no files for yet, with the command that makes them."""
    hints = []
    if context["results"] is None:
        hints.append("test results: training has not finished (no metrics.json)")
    if context["variants"] is None:
        hints.append("compressed variants: none yet — edgecls quantize RUN --int8, edgecls export RUN --format onnx")
    if context["bench"] is None:
        hints.append("benchmarks: none yet — edgecls bench RUN --json-out RUN/exports/bench.json")
    if context["gradcam"] is None:
        hints.append("Grad-CAM: none yet — edgecls gradcam RUN IMAGES --out RUN/gradcam")
    return hints
