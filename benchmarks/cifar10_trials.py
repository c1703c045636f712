"""The trials table of a CIFAR-10 recipe, written from the run folders the trials left.

Each ``--trial NAME=RUN`` is a run folder of ``edgecls train`` or of ``benchmarks/cifar10.py``
(``OUT/runs/RECIPE``, whose ``OUT/results.json`` then adds int8, TTA and the budget). The table
says what each trial changed and what it reached; nothing in it is typed by hand.

    python benchmarks/cifar10_trials.py --out benchmarks/results/cifar10/trials_whitened_cnn.md \\
        --intro benchmarks/notes/whitened_cnn_trials.md --trial "probe=/tmp/probe:3 epochs" \\
        --trial "t1=/tmp/c10/runs/cifar10_whitened_cnn"
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="CIFAR-10 trials of the whitened_cnn recipe (issue 15)")
    parser.add_argument("--trial", action="append", required=True, help="NAME=RUN_FOLDER[:NOTE]")
    parser.add_argument("--intro", type=Path, help="markdown placed under the title: what was tried and why "
                        "(no figures: those come from the run folders)")
    parser.add_argument("--data", type=Path, help="the dataset the trials trained on: its JPEG encoding is "
                        "read from a sample of files and stated under the intro")
    return parser.parse_args(argv)


def read_trial(spec: str) -> dict:
    from edgecls.training.run_state import read_history

    name, _, rest = spec.partition("=")
    path, _, note = rest.partition(":")
    run = Path(path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    history = read_history(run)
    epoch_seconds = [float(h["epoch_seconds"]) for h in history]
    # A trial stopped by hand (diverged, say) has no metrics.json: its epochs are still worth a row.
    finished = (run / "metrics.json").is_file()
    metrics = json.loads((run / "metrics.json").read_text()) if finished else {"train_seconds": sum(epoch_seconds)}
    row = {"trial": name, "note": note, "config": config, "metrics": metrics,
           "best_val": max(float(h["val_accuracy"]) for h in history),
           "first_val": float(history[0]["val_accuracy"]), "epoch_seconds": epoch_seconds}
    qat = run / "exports" / "qat_int8.json"  # written by `edgecls quantize RUN --qat`
    if qat.is_file():
        sidecar = json.loads(qat.read_text())
        row["qat"] = {"top1": sidecar["accuracy"]["top1"], "epochs": sidecar["qat"]["epochs"],
                      "kept_epoch": sidecar["qat"]["kept_epoch"]}
    results = run.parent.parent / "results.json"
    if results.is_file():
        for entry in json.loads(results.read_text()).get("runs", []):
            if entry.get("recipe") == run.name:  # cifar10.py names a run's folder after its recipe
                row["benchmark"] = entry
    return row


# The IJG (libjpeg) base luminance table, row by row, the order Pillow reports quantisation tables in.
IJG_LUMINANCE = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


def jpeg_encoding(root: Path, sample: int = 200) -> str:
    """How the dataset's JPEGs were encoded: IJG quality (from the luminance table) and chroma subsampling."""
    from collections import Counter

    import numpy as np
    from PIL import Image, JpegImagePlugin

    files = sorted(root.rglob("*.jpg"))
    if not files:
        return f"{root}: no JPEG files"
    qualities, samplings = Counter(), Counter()
    for path in files[:: max(1, len(files) // sample)][:sample]:
        with Image.open(path) as image:
            table = np.asarray(image.quantization[0][:64], dtype=float)
            # IJG scales its base table by 200 - 2q percent for quality q >= 50 (by 5000 / q below).
            scale = float(np.median(table / np.asarray(IJG_LUMINANCE))) * 100
            quality = round((200 - scale) / 2) if scale <= 100 else round(5000 / scale)
            qualities[quality] += 1
            samplings[SUBSAMPLING.get(JpegImagePlugin.get_sampling(image), "other")] += 1
    count = sum(qualities.values())
    return (f"{count} of the {len(files):,} JPEG files sampled: quality "
            + ", ".join(f"{q} ({n})" for q, n in qualities.most_common()) + " on the IJG scale (from the luminance "
            "quantisation table), chroma subsampling " + ", ".join(f"{k} ({n})" for k, n in samplings.most_common()))


def describe(config: dict) -> str:
    m, t, a = config["model"], config["train"], config["augment"]
    augment = ", ".join(part for part in (
        ("alternating flips" if a.get("alternate_flips") else "flip") if a.get("flip") else "",
        f"{a['crop_pad']}-px pad-and-crop" if a.get("crop_pad") else "",
        f"cutout {a['cutout']:g}" if a.get("cutout") else "") if part) or "none"
    from edgecls.config import SGD_MOMENTUM  # what recipes from before train.momentum ran at

    momentum = (f" momentum {t['momentum']:g}"
                if t["optimizer"] == "sgd" and t.get("momentum", SGD_MOMENTUM) != SGD_MOMENTUM else "")
    return (f"{m['arch']} α{m['alpha']:g}, {config['data']['img_size']} px, {t['optimizer']} lr {t['lr']:g}{momentum} "
            f"({t['warmup_epochs']:g} warm-up epochs, cosine), wd {t['weight_decay']:g}, batch {t['batch_size']}, "
            f"label smoothing {t['label_smoothing']:g}, {augment}, {t['precision']}"
            + (f", lookahead every {t['lookahead_every']} steps" if t.get("lookahead_every") else "")
            + (f", bias lr ×{t['bias_lr_scale']:g}" if t.get("bias_lr_scale", 1) != 1 else ""))


def markdown(title: str, rows: list[dict], intro: str = "", encoding: str = "", command: str = "") -> str:
    lines = [f"# {title}", "", *([intro.strip(), ""] if intro else []),
             *([f"The data: {encoding}.", ""] if encoding else []),
             *([f"Command: `{command}`", ""] if command else []),
             "Written by `benchmarks/cifar10_trials.py` from the trials' run folders. Train time is the sum of "
             "epoch times as edgecls records them; test top-1 on the 10,000 test images; the best epoch is "
             "chosen on validation. QAT int8: `edgecls quantize RUN --qat` run afterwards on the trained model "
             "(its fine-tuning epochs and the one kept on validation, 0 = the calibrated start); its epochs are "
             "not in the train time.", "",
             "| trial | recipe | epochs | s per epoch | train time | budget here | val after epoch 1 | best val | float top-1 | "
             "int8 top-1 | int8 with TTA | QAT int8 (epochs, kept) | notes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        b = r.get("benchmark") or {}
        budget = b.get("budget")
        per_epoch = sorted(r["epoch_seconds"])[len(r["epoch_seconds"]) // 2]
        lines.append(
            f"| {r['trial']} | {describe(r['config'])} | {len(r['epoch_seconds'])} | {per_epoch:.0f} | "
            f"{r['metrics']['train_seconds'] / 60:.1f} min | "
            + (f"{budget['budget_seconds'] / 60:.1f} min" if budget else "—") + " | "
            f"{r['first_val']:.2%} | {r['best_val']:.2%} | "
            + (f"{r['metrics']['accuracy']:.2%}" if "accuracy" in r["metrics"] else "stopped") + " | "
            + (f"{b['int8_accuracy']:.2%}" if b else "—") + " | "
            + (f"{b['tta']['int8']['tta_accuracy']:.2%}" if b.get("tta") else "—") + " | "
            + (f"{r['qat']['top1']:.2%} ({r['qat']['epochs']}, {r['qat']['kept_epoch']})" if r.get("qat") else "—")
            + f" | {r['note']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from edgecls.fsutil import write_text

    args = parse_args(argv)
    rows = [read_trial(spec) for spec in args.trial]
    encoding = jpeg_encoding(args.data) if args.data else ""
    command = " ".join(["python benchmarks/cifar10_trials.py", *(shlex.quote(a) for a in (argv or sys.argv[1:]))])
    text = markdown(args.title, rows, args.intro.read_text() if args.intro else "", encoding, command)
    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
