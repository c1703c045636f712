"""report.html: one self-contained page that shows a run (data, training, test results,
compressed variants, benchmarks, Grad-CAM), rebuilt by every command that writes into the run.

Reads files only; never imports TensorFlow.
"""

from edgecls.html_report.build import build_report

__all__ = ["build_report"]
