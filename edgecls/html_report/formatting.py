"""How numbers read on the page (Jinja filters). Missing values print as an en dash."""

from __future__ import annotations

from edgecls.html_report.reading import as_float

MISSING = "–"


def percent(fraction, digits: int = 2) -> str:
    """0.98883 → "98.88 %" (accuracies are stored as fractions)."""
    value = as_float(fraction)
    return MISSING if value is None else f"{100 * value:.{digits}f} %"


def points(delta_fraction) -> str:
    """A change of accuracy in percentage points, signed: -0.0012 → "−0.12 pt"."""
    value = as_float(delta_fraction)
    if value is None:
        return MISSING
    text = f"{100 * value:+.2f} pt"
    return text.replace("-", "\u2212")


def size(num_bytes) -> str:
    """Bytes as KB below 10 MB (model files are compared at that grain), MB above."""
    value = as_float(num_bytes)
    if value is None:
        return MISSING
    if value < 10 * 1024 * 1024:
        return f"{value / 1024:,.0f} KB"
    return f"{value / (1024 * 1024):,.1f} MB"


def millis(value) -> str:
    """Three significant digits, enough to compare runtimes: 0.2093 → "0.209", 12.41 → "12.4"."""
    number = as_float(value)
    if number is None:
        return MISSING
    if number >= 100:
        return f"{number:,.0f}"
    return f"{number:.3g}"


def decimal(value, digits: int = 4) -> str:
    number = as_float(value)
    return MISSING if number is None else f"{number:.{digits}f}"


def seconds(value) -> str:
    """45.2 → "45 s", 754 → "12 min 34 s"."""
    number = as_float(value)
    if number is None:
        return MISSING
    if number < 60:
        return f"{number:.0f} s" if number >= 10 else f"{number:.1f} s"
    minutes, secs = divmod(int(round(number)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def integer(value) -> str:
    number = as_float(value)
    return MISSING if number is None else f"{number:,.0f}"


def shade(fraction) -> str:
    """A CSS class for a score in [0, 1], so weak classes stand out in the per-class table."""
    value = as_float(fraction)
    if value is None:
        return ""
    if value >= 0.95:
        return "good"
    if value >= 0.8:
        return "fair"
    return "poor"


FILTERS = {
    "percent": percent,
    "points": points,
    "size": size,
    "ms": millis,
    "decimal": decimal,
    "seconds": seconds,
    "integer": integer,
    "shade": shade,
}
