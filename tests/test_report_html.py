"""report.html: built from partial and complete runs, and checked in a real (headless) Chromium.

The browser checks drive Debian's ``chromium`` over the DevTools protocol on a pipe
(``--remote-debugging-pipe``), so no Python browser package is needed. They skip, saying why,
only where Chromium is not installed (``.ci/run`` installs it with apt-get).
"""

from __future__ import annotations

import base64
import io
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from components import missing
from PIL import Image

from edgecls.errors import EdgeclsError
from edgecls.html_report import build_report
from edgecls.run_folder import RunFolder

PHONE_WIDTH = 390
DESKTOP_WIDTH = 1280


# --------------------------------------------------------------------------- a small real run
@pytest.fixture(scope="session")
def report_run(tmp_path_factory) -> Path:
    """tiny_cnn, 32 px, 1 epoch, on three colour classes with one broken file; then int8, a
    benchmark and Grad-CAM, so every kind of section is on the page."""
    import edgecls
    from edgecls.config import RunConfig
    from edgecls.training.trainer import train

    root = tmp_path_factory.mktemp("report-run")
    data = _write_images(root / "data")
    (data / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    config = RunConfig()
    config.data.path = str(data)
    config.data.img_size = 32
    config.model.arch = "tiny_cnn"
    config.model.weights = "none"
    config.train.epochs = 1
    config.train.batch_size = 8
    config.train.early_stopping_patience = 0
    run = root / "run"
    train(config, run, verbose=0)
    edgecls.quantize(run, int8=True, calibration=16, verbose=0)
    edgecls.bench([run / "exports" / "int8.tflite"], data=data, runtime="tflite", runs=5, rounds=1, warmup=1,
                  e2e_images=3, json_out=run / "exports" / "bench.json", verbose=0)
    edgecls.gradcam(run, [data / "a" / "img_000.jpg", data / "c" / "img_001.png"], run / "gradcam", verbose=0)
    build_report(run)
    return run


def _write_images(root: Path, classes=("a", "b", "c"), per_class=14) -> Path:
    # The conftest make_images pattern (function-scoped there; a session-scoped run needs its own).
    rng = np.random.default_rng(0)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True)
        colour = rng.integers(0, 256, 3)
        for i in range(per_class):
            noise = rng.integers(-20, 21, (16, 20, 3))
            pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"img_{i:03d}{'.jpg' if i % 2 == 0 else '.png'}")
    return root


def _copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("checkpoints", "*.keras", "*.tflite", "*.h5"))
    RunFolder(dest).report_html.unlink(missing_ok=True)
    return dest


# --------------------------------------------------------------------------- build_report on files
def test_report_of_a_full_run_has_every_section(report_run):
    html = (report_run / "report.html").read_text(encoding="utf-8")
    for anchor in ("id=\"data\"", "id=\"training\"", "id=\"results\"", "id=\"variants\"", "id=\"bench\"",
                   "id=\"gradcam\"", "id=\"config\""):
        assert anchor in html
    assert "broken.jpg" in html  # the skipped file, with its reason next to it
    assert "Per class" in html and "Confusion matrix" in html
    assert "int8.tflite" in html
    # Self-contained: every image is inline, nothing points at a file or the network.
    assert "src=\"http" not in html and "src=\"file:" not in html and "<script" not in html
    sources = [chunk.split("\"", 1)[0] for chunk in html.split("src=\"")[1:]]
    assert sources and all(src.startswith("data:image/") for src in sources)
    for src in sources:
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).load()


def test_report_is_rebuilt_from_what_is_on_disk(report_run, tmp_path):
    run = _copy_run(report_run, tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["accuracy"] = 0.123456
    (run / "metrics.json").write_text(json.dumps(metrics))
    path = build_report(run)
    assert path == run / "report.html"
    assert "12.35 %" in path.read_text(encoding="utf-8")
    assert not [p for p in run.iterdir() if p.name.startswith(".tmp-")]


def test_partial_run_without_history_exports_or_bench(report_run, tmp_path):
    run = _copy_run(report_run, tmp_path / "run")
    shutil.rmtree(run / "exports")
    shutil.rmtree(run / "gradcam")
    (run / "history.csv").unlink()
    (run / "plots" / "history.png").unlink()
    html = build_report(run).read_text(encoding="utf-8")
    assert "id=\"training\"" not in html and "id=\"variants\"" not in html and "id=\"bench\"" not in html
    assert "id=\"gradcam\"" not in html
    assert "id=\"results\"" in html and "id=\"data\"" in html
    assert "edgecls quantize RUN --int8" in html  # says how to get the missing section


def test_run_stopped_after_its_config(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model:\n  arch: tiny_cnn\ndata:\n  img_size: 32\n")
    html = build_report(run).read_text(encoding="utf-8")
    assert "tiny_cnn" in html and "training has not finished" in html
    assert "id=\"results\"" not in html


def test_skipped_files_listed_with_reasons_without_a_scan(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data:\n  path: /data/pets\n")
    (run / "skipped_files.txt").write_text("/data/pets/cat/empty.jpg\tempty file\n"
                                           "/data/pets/dog/x.png\tcould not decode: truncated <PNG>\n")
    html = build_report(run).read_text(encoding="utf-8")
    assert "empty.jpg" in html and "empty file" in html
    assert "truncated &lt;PNG&gt;" in html  # autoescaped, never raw markup from a file name or reason
    assert "2 skipped" in html


def test_unreadable_files_become_notes_not_errors(report_run, tmp_path):
    run = _copy_run(report_run, tmp_path / "run")
    (run / "classification_report.json").write_text("{ not json")
    (run / "plots" / "confusion_matrix.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (run / "exports" / "bench.json").write_text("[]")
    html = build_report(run).read_text(encoding="utf-8")
    assert "classification_report.json: not readable as JSON" in html
    assert "plots/confusion_matrix.png: not a readable image" in html
    assert "id=\"results\"" in html  # metrics.json alone still gives the test results


@pytest.mark.parametrize("junk", [[1, "x", None], "text", 3.5,
                                  {"splits": [1], "per_class": 3, "accuracy": "high", "num_samples": "many",
                                   "images": {"a": 1}, "size": "big", "latency_ms": [], "candidates": [7]}])
def test_files_of_the_wrong_shape_do_not_crash(report_run, tmp_path, junk):
    """Every JSON file the report reads holds something else (hand-edited, another version):
    the page is still built."""
    run = _copy_run(report_run, tmp_path / "run")
    optimize = RunFolder(run).optimize
    optimize.mkdir()
    for name in ("metrics.json", "classification_report.json", "data_scan.json", "exports/int8.json",
                 "exports/bench.json", "gradcam/gradcam.json", "exports/optimize/leaderboard.json"):
        (run / name).write_text(json.dumps(junk))
    (run / "history.csv").write_text("epoch,accuracy,val_accuracy\n1,,x\n2,0.5\n")
    (run / "misclassified.csv").write_text("file,true_label\n/nowhere/x.png,a\n")
    html = build_report(run).read_text(encoding="utf-8")
    assert "id=\"training\"" in html and "edgecls run report" in html


def test_not_a_run_folder_is_one_clear_error(tmp_path):
    with pytest.raises(EdgeclsError, match="run folder not found"):
        build_report(tmp_path / "missing")
    with pytest.raises(EdgeclsError, match="not a run folder"):
        build_report(tmp_path)


def test_optimize_leaderboard_and_pareto_plot(report_run, tmp_path):
    """The leaderboard as edgecls optimize writes it (its own writer and plot), chosen row marked."""
    from edgecls.searching.leaderboard import choose, mark_budget, plot_pareto, val_drop_pt, write_leaderboard

    run = _copy_run(report_run, tmp_path / "run")
    out = RunFolder(run).optimize
    out.mkdir(parents=True)
    float_val = 0.92
    records = []
    for variant, family, val, ms, size, integer in (("float32", "float32", 0.92, 0.60, 1_100_000, False),
                                                    ("int8_ptq", "int8", 0.915, 0.21, 300_000, True),
                                                    ("int8_pruned", "int8", 0.80, 0.19, 280_000, True)):
        records.append({"variant": variant, "format": "tflite", "family": family, "val_accuracy": val,
                        "val_drop_pt": val_drop_pt(val, float_val), "test_accuracy": val - 0.01, "latency_ms": ms,
                        "size_bytes": size, "gzip_bytes": size - 20_000, "partitions": 1, "integer": integer,
                        "notes": "", "path": f"{variant}.tflite"})
    mark_budget(records, 0.5)
    chosen = choose(records, "latency")
    for record in records:
        record["chosen"] = record is chosen
    write_leaderboard(out, records, {"objective": "latency", "runtime": "tflite", "max_drop_pt": 0.5,
                                     "float_val_accuracy": float_val, "status": "done",
                                     "stop_reason": "every candidate measured", "chosen": chosen["variant"]})
    plot_pareto(out / "pareto.png", records, float_val=float_val, max_drop=0.5, title="test")

    html = build_report(run).read_text(encoding="utf-8")
    assert "id=\"optimize\"" in html and "every candidate measured" in html
    assert "<strong>int8_ptq</strong>" in html  # the chosen candidate, named above the table
    assert "chosen by optimize" in html  # and in the headline
    assert html.count("✗") == 2  # the legend, and int8_pruned (12 pt lost: outside the budget)
    assert "Pareto front" in html


# --------------------------------------------------------------------------- the browser
def test_report_in_chromium_at_desktop_and_phone_width(report_run, tmp_path):
    browser = _chromium_or_skip()
    page = report_run / "report.html"
    for width in (DESKTOP_WIDTH, PHONE_WIDTH):
        shot = tmp_path / f"report-{width}.png"
        result = render_in_chromium(browser, page, width=width, screenshot=shot)
        assert result["images"] >= 5, result  # plots, mistakes, bench and Grad-CAM
        assert result["broken_images"] == [], result
        assert result["console_errors"] == [], result
        assert result["text_length"] > 1000, result
        assert result["scroll_width"] <= width, f"the page overflows {width} px: {result['scroll_width']} px wide"
        with Image.open(shot) as img:
            assert img.width == width
            colours = img.convert("RGB").resize((64, 64)).getcolors(64 * 64)
            assert colours is None or len(colours) > 8, "the screenshot is (nearly) one flat colour"


def test_browser_check_catches_broken_images_and_errors(tmp_path):
    """The browser check itself can fail: a broken image, a blocked fetch and a script error."""
    browser = _chromium_or_skip()
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><html><body><p>bad page</p>"
                    "<img src=\"data:image/png;base64,iVBORw0KGgoAAAA\">"
                    "<img src=\"http://127.0.0.1:9/missing.png\">"
                    "<script>console.error('boom'); undefinedFunction();</script>"
                    "<div style=\"width: 2000px\">wide</div></body></html>")
    result = render_in_chromium(browser, page, width=PHONE_WIDTH)
    assert len(result["broken_images"]) == 2
    assert any("boom" in e for e in result["console_errors"])
    assert any("undefinedFunction" in e for e in result["console_errors"])
    assert result["scroll_width"] > PHONE_WIDTH


def _chromium_or_skip() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    missing("Chromium is not installed (.ci/run installs Debian's `chromium` with apt-get; "
                "run `apt-get install chromium` to check report.html in a browser)")


# --------------------------------------------------------------------------- DevTools over a pipe
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe"]

# Runs in the page once it has loaded: waits for every image to finish decoding, then measures.
PAGE_CHECKS = """(async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  return {
    images: images.length,
    broken_images: images.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src.slice(0, 60)),
    text_length: document.body ? document.body.innerText.trim().length : 0,
    scroll_width: Math.max(document.documentElement.scrollWidth, document.body ? document.body.scrollWidth : 0),
    height: Math.ceil(document.documentElement.scrollHeight),
  };
})()"""


def render_in_chromium(browser: str, page: Path, *, width: int, height: int = 900, screenshot: Path | None = None,
                       full_page: bool = False, timeout: float = 60.0) -> dict:
    """Open ``page`` in headless Chromium at ``width`` CSS px; returns the page checks plus every console
    error (console.error, uncaught exceptions, failed loads, CSP violations). ``screenshot`` is written
    at that width: the first screen, or with ``full_page`` the whole page."""
    with tempfile.TemporaryDirectory(prefix="edgecls-chromium-") as profile, _DevTools(browser, profile, timeout) as tools:
        target = tools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            tools.call(method, session=session)
        tools.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": width < 600}, session=session)
        tools.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        tools.wait_for("Page.loadEventFired", session)
        checks = tools.call("Runtime.evaluate", {"expression": PAGE_CHECKS, "awaitPromise": True,
                                                 "returnByValue": True}, session=session)["result"]["value"]
        if screenshot is not None:
            params = {"format": "png"}
            if full_page:
                tools.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": checks["height"],
                                                                 "deviceScaleFactor": 1, "mobile": width < 600},
                           session=session)
            data = tools.call("Page.captureScreenshot", params, session=session)["data"]
            screenshot.write_bytes(base64.b64decode(data))
        time.sleep(0.2)  # late console messages (a failed load reported after onload)
        tools.drain()
        checks["console_errors"] = tools.console_errors(session)
        return checks


class _DevTools:
    """The Chrome DevTools protocol on fds 3 (commands in) and 4 (replies out), NUL-separated JSON."""

    def __init__(self, browser: str, profile: str, timeout: float):
        self.browser, self.profile, self.timeout = browser, profile, timeout
        self.next_id = 0
        self.events: list[dict] = []
        self.buffer = b""

    def __enter__(self):
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()

        def fds_3_and_4():
            # Copies first: a pipe end may already be fd 3 or 4, and dup2 onto itself would keep
            # its close-on-exec flag, so the browser would start without it.
            reading, writing = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(reading, 3)
            os.dup2(writing, 4)

        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([self.browser, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     preexec_fn=fds_3_and_4, close_fds=False)
        os.close(to_browser_r)
        os.close(from_browser_w)
        return self

    def __exit__(self, *exc):
        try:
            self.send("Browser.close")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self.to_browser)
            os.close(self.from_browser)
            self.log.close()

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        return self.next_id

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + self.timeout
        while True:
            for message in self._read(deadline):
                if message.get("id") == wanted:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message.get("result", {})
                self.events.append(message)

    def wait_for(self, event: str, session: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for message in self.events:
                if message.get("method") == event and message.get("sessionId") == session:
                    return message
            self.events.extend(self._read(deadline))

    def drain(self) -> None:
        while True:
            late = self._read(time.monotonic() + 0.1, quiet=True)
            if not late:
                return
            self.events.extend(late)

    def console_errors(self, session: str) -> list[str]:
        errors = []
        for message in self.events:
            if message.get("sessionId") != session:
                continue
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                errors.append(params["entry"].get("text", ""))
        return errors

    def _read(self, deadline: float, quiet: bool = False) -> list[dict]:
        messages = []
        while not messages:
            left = deadline - time.monotonic()
            if left <= 0:
                if quiet:
                    return messages
                self.log.seek(0)
                tail = self.log.read()[-2000:].decode(errors="replace")
                raise TimeoutError(f"Chromium did not answer within {self.timeout:.0f} s; its log ends: {tail}")
            ready, _, _ = select.select([self.from_browser], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited (code {self.proc.poll()})")
            self.buffer += chunk
            *complete, self.buffer = self.buffer.split(b"\0")
            messages += [json.loads(part) for part in complete if part]
        return messages


def save_docs_screenshot(page: Path, out: Path, width: int = DESKTOP_WIDTH) -> Path:
    """The whole page at ``width``, cropped to the report's column and stored with 256 colours
    (the README's docs/report.png: a fraction of the size, no visible loss on text and plots)."""
    browser = shutil.which("chromium")
    if browser is None:
        raise SystemExit("chromium is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "page.png"
        render_in_chromium(browser, page, width=width, screenshot=shot, full_page=True)
        with Image.open(shot) as img:
            margin = max(0, (img.width - 1152) // 2)
            column = img.convert("RGB").crop((margin, 0, img.width - margin, img.height))
    column.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


if __name__ == "__main__":
    # python tests/test_report_html.py RUN/report.html docs/report.png
    import sys

    print(save_docs_screenshot(Path(sys.argv[1]), Path(sys.argv[2])))
