"""Full and read-only disks, made for the test on a small tmpfs: one line and exit 2, never a crash."""

from __future__ import annotations

import os
import subprocess
import sys

from components import tmpfs


def _edgecls(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "edgecls", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_the_image_cache_on_a_full_disk_is_one_line_not_sigbus(tmp_path, make_images):
    # 120 images of 64×64 make a 1.4 MB cache array; the disk has 256 KB. Written through a sparse
    # memory map, the first page the disk cannot back used to kill the process with SIGBUS (exit -7).
    data = make_images(tmp_path / "data", per_class=40, size=(64, 64))
    with tmpfs(tmp_path / "cache", size_kb=256) as cache:
        out = _edgecls("train", data, "--out", tmp_path / "run", "--arch", "tiny_cnn", "--img-size", 64,
                       "--epochs", 1, env={"EDGECLS_CACHE": str(cache)})
        leftovers = sorted(p.name for p in cache.rglob("*") if p.is_file())
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert lines[-1].startswith("error: cannot write the image cache") and "EDGECLS_CACHE" in lines[-1], lines
    assert "Traceback" not in out.stderr
    assert leftovers == [], leftovers  # the reserved scratch file is gone again
