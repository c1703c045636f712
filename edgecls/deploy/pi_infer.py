#!/usr/bin/env python3
"""Classify images with an edgecls TFLite model on a Raspberry Pi (or any machine).

Standalone on purpose: Python standard library + numpy + pillow + ai_edge_litert or tflite_runtime,
nothing else. Works with tflite-runtime 2.14 on numpy 1.x (Python <= 3.11) and ai-edge-litert on
numpy 2. Labels and preprocessing come from the sidecar (<model>.json) beside the model, else from
the copy edgecls embeds in the .tflite file itself (a zip appended to the flatbuffer, which the
interpreter ignores; read here with the standard library's zipfile).

    python3 pi_infer.py int8.tflite photo.jpg more_photos/ --top-k 3
    python3 pi_infer.py int8.tflite photos/ --json > predictions.json
    python3 pi_infer.py int8.tflite --camera 10                 # 10 frames (picamera2 or OpenCV)
    python3 pi_infer.py int8.tflite test_images/ --bench 200 --threads 4 --bench-json pi_bench.json

The image loading below reproduces edgecls.data.images.load_rgb + resize_rgb exactly (EXIF
orientation, transparency on white, 16-bit and float images, CMYK, PIL bilinear squash), so the
device sees the pixels the model was trained and calibrated on. edgecls' tests hold the two to
byte-for-byte equality; change them together.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import sys
import tempfile
import time
import warnings
import zipfile
import zlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
RESIZE_METHOD = "pil-bilinear-squash"
_WHITE = (255, 255, 255, 255)
_MODES_WITH_ALPHA = frozenset({"RGBA", "RGBa", "LA", "La", "PA", "P"})
_BILINEAR = getattr(Image, "Resampling", Image).BILINEAR  # Pillow < 9.1 has no Image.Resampling


class UserError(Exception):
    """Printed as one line ``error: ...``; exit code 2."""


class BadImage(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


# ----------------------------------------------------------------------------- images (= edgecls)


def load_rgb(path):
    """Decode into upright 8-bit RGB, as edgecls.data.images.load_rgb; raises BadImage only."""
    try:
        if os.stat(path).st_size == 0:
            raise BadImage("empty file")
    except OSError as exc:
        raise BadImage("cannot read: %s" % (exc.strerror or exc)) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            img.load()
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and img.size[0] * img.size[1] > limit:
                raise BadImage("too large: %dx%d pixels" % img.size)
            return _to_rgb(_upright(img))
    except BadImage:
        raise
    except Exception as exc:  # PIL reports broken files through many exception types
        raise BadImage(_reason_for(exc)) from None


def resize_rgb(img, height, width):
    """PIL bilinear, whole image squashed to (height, width), no reducing_gap: uint8 (h, w, 3)."""
    if img.mode != "RGB":
        raise ValueError("resize_rgb expects an RGB image, got mode %r" % img.mode)
    return np.array(img.resize((width, height), _BILINEAR, reducing_gap=None), dtype=np.uint8)


def load_image_array(path, height, width):
    return resize_rgb(load_rgb(path), height, width)


def _upright(img):
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img  # a broken EXIF block does not make the pixels wrong


def _to_rgb(img):
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "F" or mode.startswith("I"):
        return Image.fromarray(_high_depth_to_uint8(img)).convert("RGB")
    if mode in _MODES_WITH_ALPHA:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    return img.convert("RGB")


def _high_depth_to_uint8(img):
    values = np.asarray(img)
    if img.mode == "F":
        values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _reason_for(exc):
    if isinstance(exc, UnidentifiedImageError):
        return "not an image"
    if isinstance(exc, (Image.DecompressionBombWarning, Image.DecompressionBombError)):
        return "too large"
    if isinstance(exc, MemoryError):
        return "too large: out of memory while decoding"
    text = " ".join(str(exc).split())
    if isinstance(exc, EOFError) or "truncated" in text.lower() or "broken data stream" in text:
        return "truncated image"
    return "could not decode: %s" % (text[:200] or type(exc).__name__)


def expand_inputs(inputs):
    """Files as given, plus image files found (sorted, recursively, hidden ones left out) in folders."""
    files = []
    for given in inputs:
        if os.path.isdir(given):
            found = []
            for root, dirs, names in os.walk(given):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                        found.append(os.path.join(root, name))
            if not found:
                raise UserError("no image files in folder %s" % given)
            files.extend(found)
        elif os.path.isfile(given):
            files.append(given)
        else:
            raise UserError("image not found: %s" % given)
    return files


# ----------------------------------------------------------------------------- model


def interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, "tflite-runtime"
    except ImportError:
        raise UserError("no TFLite interpreter: pip install tflite-runtime (Python <= 3.11) "
                        "or ai-edge-litert") from None


def _version(package):
    try:
        from importlib import metadata
        return metadata.version(package)
    except Exception:
        return "?"


EMBEDDED_SIDECAR = "edgecls/sidecar.json"  # = edgecls.model_metadata.ZIP_SIDECAR


def read_sidecar(model_path):
    """The sidecar (<model>.json) beside the model, else the one embedded in it, else None."""
    path = os.path.splitext(model_path)[0] + ".json"
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except ValueError as err:
            raise UserError("cannot read sidecar %s: %s" % (path, err)) from None
        if not isinstance(data, dict) or "labels" not in data or "input" not in data:
            raise UserError("%s is not an edgecls sidecar (no labels/input)" % path)
        if data.get("sha256") and _sha256(model_path) != data["sha256"]:  # as edgecls.sidecar.check_pair
            raise UserError("%s is stale: it describes other bytes than %s (sha256 differs; a copy was cut short or "
                            "one of the two files was replaced); copy both again, or delete %s to use the copy "
                            "inside the model" % (path, model_path, os.path.basename(path)))
        return data
    return read_embedded_sidecar(model_path)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_embedded_sidecar(model_path):
    """The sidecar edgecls appends to a .tflite file as a zip, None when the file has none."""
    damaged = ("%s: its embedded sidecar (%s) is damaged (%%s), so its labels and preprocessing are unknown; "
               "put %s beside it or export it again"
               % (model_path, EMBEDDED_SIDECAR, os.path.basename(os.path.splitext(model_path)[0] + ".json")))
    try:
        with zipfile.ZipFile(model_path) as zipped:
            if EMBEDDED_SIDECAR not in zipped.namelist():
                return None
            text = zipped.read(EMBEDDED_SIDECAR).decode("utf-8")
    except zipfile.BadZipFile as err:
        with open(model_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - (1 << 20)))
            if EMBEDDED_SIDECAR.encode() in handle.read():
                raise UserError(damaged % _first(err)) from None
        return None  # a plain flatbuffer
    except (zlib.error, UnicodeDecodeError, EOFError) as err:
        raise UserError(damaged % _first(err)) from None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise UserError(damaged % _first(err)) from None
    if not isinstance(data, dict) or "labels" not in data or "input" not in data:
        raise UserError(damaged % "no labels/input")
    return data


def _first(err):
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


class Model:
    def __init__(self, path, threads=1):
        if not os.path.isfile(path):
            raise UserError("model file not found: %s" % path)
        if not path.lower().endswith(".tflite"):
            raise UserError("not a TFLite model (expected a .tflite file): %s" % path)
        self.path = path
        self.sidecar = read_sidecar(path)
        cls, self.backend = interpreter_class()
        start = time.perf_counter()
        try:
            self.interpreter = cls(model_path=path, num_threads=threads)
            with _quiet_native_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise UserError("cannot load TFLite model %s: %s" % (path, first)) from None
        self.load_ms = (time.perf_counter() - start) * 1e3
        self.threads = threads
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.height, self.width = int(self.input["shape"][1]), int(self.input["shape"][2])
        self.num_classes = int(self.output["shape"][-1])
        integer_output = np.issubdtype(self.output["dtype"], np.integer)
        if self.sidecar is not None:
            self.labels = [str(label) for label in self.sidecar["labels"]]
            self.output_kind = (self.sidecar.get("output") or {}).get("kind", "probabilities")
        else:
            self.labels = _labels_txt(path) or [str(i) for i in range(self.num_classes)]
            self.output_kind = "logits" if integer_output else "probabilities"
            print("note: no sidecar for %s; assuming RGB 0-255 input resized with PIL bilinear, %s, %s output "
                  "(no sidecar JSON beside it, none embedded in it)"
                  % (os.path.basename(path), "labels from labels.txt" if _labels_txt(path) else
                     "class indices as labels", self.output_kind), file=sys.stderr)
        if len(self.labels) != self.num_classes:
            raise UserError("%s has %d outputs but %d labels" % (path, self.num_classes, len(self.labels)))

    def prepare(self, image):
        """uint8 (H, W, 3) → the input tensor (a batch of one), as edgecls' TFLite runtime prepares it."""
        batch = image[None]
        dtype, (scale, zero) = self.input["dtype"], self.input["quantization"]
        if dtype == np.uint8 and (scale, zero) == (1.0, 0):
            return batch.astype(np.uint8)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            return np.clip(np.round(batch / scale + zero), info.min, info.max).astype(dtype)
        return batch.astype(np.float32)

    def invoke(self, prepared):
        self.interpreter.set_tensor(self.input["index"], prepared)
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.output["index"])
        if np.issubdtype(self.output["dtype"], np.integer):
            scale, zero = self.output["quantization"]
            raw = (raw.astype(np.float32) - zero) * scale
        return raw

    def finish(self, raw):
        raw = np.asarray(raw, dtype=np.float32)
        if self.output_kind != "logits":
            return raw
        shifted = raw - raw.max(axis=-1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=-1, keepdims=True)

    def probabilities(self, image):
        return self.finish(self.invoke(self.prepare(image)))[0]


class _quiet_native_stderr:
    """Silence what the interpreter's C++ side prints straight to file descriptor 2."""

    def __enter__(self):
        self.saved = None
        try:
            sys.stderr.flush()
            self.saved = os.dup(2)
            self.devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(self.devnull, 2)
        except (OSError, AttributeError, ValueError):
            self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)
            os.close(self.devnull)
        return False


def _labels_txt(model_path):
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "labels.txt")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def top_k_record(name, probs, labels, k):
    order = np.argsort(-probs, kind="stable")[:max(1, min(k, len(probs)))]
    return {"file": str(name),
            "top_k": [{"index": int(i), "label": labels[i], "score": float(probs[i])} for i in order]}


# ----------------------------------------------------------------------------- camera


def camera_frames(count, index=0, size=(640, 480)):
    """(name, RGB uint8 frame) from picamera2 if installed, else OpenCV; ``count`` frames."""
    try:
        from picamera2 import Picamera2
    except ImportError:
        Picamera2 = None
    if Picamera2 is not None:
        camera = Picamera2(index)
        camera.configure(camera.create_preview_configuration(main={"format": "RGB888", "size": size}))
        camera.start()
        try:
            for i in range(count):
                # picamera2's "RGB888" arrays are ordered B, G, R (libcamera names formats little-endian).
                yield "camera:%d" % i, np.ascontiguousarray(camera.capture_array()[..., 2::-1])
        finally:
            camera.stop()
        return
    try:
        import cv2
    except ImportError:
        raise UserError("--camera needs picamera2 (sudo apt install python3-picamera2, then a venv made with "
                        "--system-site-packages) or OpenCV (pip install opencv-python-headless)") from None
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise UserError("cannot open camera %d with OpenCV" % index)
    try:
        for i in range(count):
            ok, frame = capture.read()
            if not ok or frame is None:
                raise UserError("camera %d returned no frame" % index)
            yield "camera:%d" % i, np.ascontiguousarray(frame[..., 2::-1])  # OpenCV frames are BGR
    finally:
        capture.release()


def frame_to_array(frame, height, width):
    return resize_rgb(Image.fromarray(frame, "RGB"), height, width)


# ----------------------------------------------------------------------------- bench


def _percentiles(samples_ns):
    values = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if values.size == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "min": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(values.mean()),
            "min": float(values.min())}


def _device_name():
    for source in ("/proc/device-tree/model",):
        try:
            with open(source, "rb") as handle:
                return handle.read().decode("utf-8", "replace").strip("\x00\n ") or None
        except OSError:
            pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def bench(models, files, runs, rounds, warmup, e2e_images, answers=False):
    """Latency of set_tensor + invoke + get_tensor alone on a prepared image, as edgecls bench measures it.

    Several models are timed interleaved, round by round (as edgecls times candidates), so drift
    on the machine hits them alike; one record per model, in the order given. ``answers``: each
    record also holds every image's probabilities (``edgecls bench --parity`` compares them).
    """
    if isinstance(models, Model):
        models = [models]
    if runs < 1:
        raise UserError("--bench needs at least one run")
    rounds = max(1, min(rounds, runs))
    per_round = runs // rounds
    by_size = {}  # models of one input size share the decoded images
    for model in models:
        if (model.height, model.width) not in by_size:
            by_size[(model.height, model.width)] = _load_all(files, model)
    loaded = [by_size[(model.height, model.width)] for model in models]
    if not loaded[0][1]:
        raise UserError("no usable image to benchmark with")
    prepared = [model.prepare(arrays[0]) for model, (arrays, _, _) in zip(models, loaded)]
    for model, one in zip(models, prepared):
        for _ in range(warmup):
            model.invoke(one)
    clock = time.perf_counter_ns
    samples, medians = [[] for _ in models], [[] for _ in models]
    for _ in range(rounds):
        for model, one, mine, middles in zip(models, prepared, samples, medians):
            start = len(mine)
            for _ in range(per_round):
                t0 = clock()
                model.invoke(one)
                mine.append(clock() - t0)
            middles.append(float(np.median(mine[start:])) / 1e6)
    return [_bench_record(model, found, mine, middles, warmup, e2e_images, answers)
            for model, found, mine, middles in zip(models, loaded, samples, medians)]


def _end_to_end(model, kept, e2e_images):
    clock = time.perf_counter_ns
    pre, total = [], []
    step = max(1, len(kept) // max(1, e2e_images)) if e2e_images else 0
    for name in (kept[::step][:e2e_images] if step else []):
        t0 = clock()
        prep = model.prepare(load_image_array(name, model.height, model.width))
        t1 = clock()
        int(model.finish(model.invoke(prep)).argmax())
        pre.append(t1 - t0)
        total.append(clock() - t0)
    return pre, total


def _bench_record(model, loaded, samples, medians, warmup, e2e_images, answers=False):
    arrays, kept, bad = loaded
    pre, total = _end_to_end(model, kept, e2e_images)
    probs = [model.probabilities(array) for array in arrays]
    accuracy, top5 = _folder_accuracy(model, probs, kept)
    middle = float(np.median(medians))
    source_run = (model.sidecar or {}).get("source_run")
    name = os.path.basename(model.path)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    record = {
        "schema": "edgecls.bench/1",
        "model": model.path,
        "name": "%s/%s" % (os.path.basename(str(source_run).rstrip("/")), name) if source_run else name,
        "variant": (model.sidecar or {}).get("variant") or os.path.splitext(name)[0],
        "format": "tflite",
        "runtime": "tflite",
        "backend": "%s %s" % (model.backend.replace("-", "_"), _version(model.backend)),
        "role": "export",
        "source": "device",
        "machine": platform.machine(),
        "host": platform.node(),
        "cpu": _device_name(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threads": model.threads,
        "input_size": [model.height, model.width],
        "batch": 1,
        "size_bytes": os.path.getsize(model.path),
        "load_ms": model.load_ms,
        "peak_rss_mb": maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024,
        "rss_growth_mb": None,
        "latency_ms": _percentiles(samples),
        "rounds": {"count": len(medians), "runs_per_round": len(samples) // max(1, len(medians)), "warmup": warmup,
                   "medians_ms": medians,
                   "spread_pct": (max(medians) - min(medians)) / middle * 100 if middle > 0 else 0.0},
        "throughput_ips": float(1e9 / np.mean(samples)),
        "preprocess_ms": _percentiles(pre),
        "end_to_end_ms": _percentiles(total),
        "data": None,
        "images": len(kept),
        "skipped": len(bad),
        "accuracy": accuracy,
        "top5_accuracy": top5,
        "agreement": None,
        "reference": None,
    }
    if answers:
        record["answers"] = {"files": kept, "labels": model.labels,
                             "probs": [[round(float(p), 7) for p in row] for row in probs]}
    return record


def _load_all(files, model):
    arrays, kept, bad = [], [], []
    for name in files:
        try:
            arrays.append(load_image_array(name, model.height, model.width))
            kept.append(name)
        except BadImage as err:
            bad.append((name, err.reason))
    return arrays, kept, bad


def _folder_accuracy(model, probs, files):
    """Top-1/top-5 when every image sits in a folder named after its class; else (None, None)."""
    truths = [os.path.basename(os.path.dirname(os.path.abspath(f))) for f in files]
    if not files or any(t not in model.labels for t in truths):
        return None, None
    index = {label: i for i, label in enumerate(model.labels)}
    hits1 = hits5 = 0
    for scores, truth in zip(probs, truths):
        order = np.argsort(-scores, kind="stable")
        hits1 += int(order[0] == index[truth])
        hits5 += int(index[truth] in order[:5])
    top5 = hits5 / len(files) if model.num_classes > 5 else None
    return hits1 / len(files), top5


def _write_json_atomically(path, data):
    folder = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
            out.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ----------------------------------------------------------------------------- command line


def _looks_like_input(arg: str) -> bool:
    return os.path.isdir(arg) or os.path.splitext(arg)[1].lower() in IMAGE_EXTENSIONS


def _bundled_model() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    models = sorted(name for name in os.listdir(here) if name.lower().endswith(".tflite"))
    if len(models) != 1:
        raise UserError("give the .tflite model as the first argument "
                        f"({len(models)} .tflite files beside pi_infer.py, so none is taken by default)")
    return os.path.join(here, models[0])


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Classify images with an edgecls TFLite model.")
    parser.add_argument("model", nargs="?", default=None,
                        help="the .tflite model (its sidecar <model>.json beside it, or embedded by edgecls); may be "
                             "left out inside a "
                             "bundle that holds one .tflite")
    parser.add_argument("inputs", nargs="*", help="image files and folders")
    parser.add_argument("--top-k", type=int, default=5, help="classes shown per image (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1; a Pi has 4)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of records")
    parser.add_argument("--camera", type=int, default=0, metavar="N", help="classify N camera frames")
    parser.add_argument("--camera-index", type=int, default=0, help="camera number (default 0)")
    parser.add_argument("--bench", type=int, default=0, metavar="N", help="time N invocations; write --bench-json")
    parser.add_argument("--rounds", type=int, default=5, help="--bench: split the runs into R rounds")
    parser.add_argument("--warmup", type=int, default=10, help="--bench: untimed runs first")
    parser.add_argument("--e2e-images", type=int, default=50, help="--bench: files timed end to end")
    parser.add_argument("--bench-json", default="pi_bench.json",
                        help="--bench output, read back with `edgecls bench --import FILE` (- : stdout)")
    parser.add_argument("--compare", action="append", default=[], metavar="MODEL",
                        help="--bench: another .tflite model timed interleaved with the first (repeatable)")
    parser.add_argument("--answers", action="store_true",
                        help="--bench: also record each image's probabilities (edgecls bench --parity)")
    args = parser.parse_args(argv)
    if args.model is None or _looks_like_input(args.model):
        # `python pi_infer.py photo.jpg` in a bundle: the first argument is an input, the model is ours.
        if args.model is not None:
            args.inputs.insert(0, args.model)
        args.model = _bundled_model()
    if args.top_k < 1 or args.threads < 1 or args.camera < 0 or args.bench < 0:
        raise UserError("--top-k and --threads must be at least 1; --camera and --bench at least 0")
    if not args.inputs and not args.camera:
        raise UserError("give image files or folders, or --camera N")
    if (args.compare or args.answers) and not args.bench:
        raise UserError("--compare and --answers need --bench N")
    return args


def run(argv=None):
    args = parse_args(argv)
    files = expand_inputs(args.inputs) if args.inputs else []
    model = Model(args.model, threads=args.threads)
    if args.bench:
        return _run_bench(args, model, files)
    records, bad = [], []
    for name in files:
        try:
            array = load_image_array(name, model.height, model.width)
        except BadImage as err:
            bad.append((name, err.reason))
            continue
        records.append(top_k_record(name, model.probabilities(array), model.labels, args.top_k))
        if not args.json:
            print(_line(records[-1]), flush=True)
    for name, frame in camera_frames(args.camera, args.camera_index) if args.camera else ():
        records.append(top_k_record(name, model.probabilities(frame_to_array(frame, model.height, model.width)),
                                    model.labels, args.top_k))
        if not args.json:
            print(_line(records[-1]), flush=True)
    if bad:
        print("note: skipped %d file%s that are not usable images: %s (%s)%s"
              % (len(bad), "" if len(bad) == 1 else "s", bad[0][0], bad[0][1],
                 " and %d more" % (len(bad) - 1) if len(bad) > 1 else ""), file=sys.stderr)
    if not records:
        raise UserError("no usable image: %s: %s" % bad[0] if bad else "nothing to classify")
    if args.json:
        print(json.dumps(records, indent=2))
    return 0


def _run_bench(args, model, files):
    if not files:
        raise UserError("--bench needs image files or folders to time")
    models = [model] + [Model(path, threads=args.threads) for path in args.compare]
    records = bench(models, files, args.bench, args.rounds, args.warmup, args.e2e_images, answers=args.answers)
    if args.bench_json == "-":
        print(json.dumps(records))
    else:
        _write_json_atomically(args.bench_json, records)
    for record in records:
        lat = record["latency_ms"]
        print("%s: p50 %.3f ms, p90 %.3f ms, p99 %.3f ms (%d threads, %s) -> %s"
              % (record["name"], lat["p50"], lat["p90"], lat["p99"], model.threads, record["backend"],
                 "stdout" if args.bench_json == "-" else args.bench_json), file=sys.stderr)
    return 0


def _line(record):
    return "%s: %s" % (record["file"], ", ".join("%s %.3f" % (t["label"], t["score"]) for t in record["top_k"]))


def main(argv=None):
    try:
        with warnings.catch_warnings():
            # PIL warns about odd metadata ("Corrupt EXIF data"); the pixels are used as they are.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            return run(argv)
    except UserError as err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
