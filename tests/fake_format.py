"""A format that exists only in tests, to show that a new row of edgecls.formats.FORMATS is enough.

Its files are float TFLite flatbuffers under the suffix ``.fake``, run by a subclass of the TFLite
runtime that names itself ``fake``: real bytes a real interpreter runs, so export, bench and
predict do real work on them — only the table knows the format exists.
"""

from __future__ import annotations

from edgecls.converters import tflite_convert
from edgecls.converters.publishing import publish_model
from edgecls.deploy.runtimes import TFLiteRuntime
from edgecls.formats import Format

VERSION = "fake-runtime 0.1"

FAKE = Format("fake", ".fake", "Fake (tests only)", export="fake_format:export_fake",
              runtime="fake_format:FakeRuntime", version="fake_format:version",
              describe="edgecls.converters.publishing:describe_tflite", packages=("numpy",))


def export_fake(ctx, *, prefix, int8, options, reference_top1):
    variant = f"{prefix}fake_float32"
    blob = tflite_convert.convert(ctx.model, "float32")
    return [publish_model(ctx, variant, ".fake", lambda tmp: tmp.write_bytes(blob), reference_top1=reference_top1)]


class FakeRuntime(TFLiteRuntime):
    name = "fake"


def version() -> str:
    return VERSION


def install(monkeypatch) -> None:
    """Add the fake row to the table for one test (monkeypatch takes it out again)."""
    from edgecls import formats

    monkeypatch.setitem(formats.FORMATS, FAKE.name, FAKE)
