"""The README's measured-results table is what benchmarks/readme_results.py writes from benchmarks/results."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def readme_results():
    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "benchmarks" / "readme_results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_readme_block_is_what_the_script_writes(readme_results):
    readme = (ROOT / "README.md").read_text()
    assert readme_results.rewritten(readme, readme_results.block()) == readme, (
        "README.md's measured results differ from benchmarks/results: run python benchmarks/readme_results.py")
    assert readme_results.rewritten(readme, readme_results.int8_by_cpu(), readme_results.BEGIN_CPU,
                                    readme_results.END_CPU) == readme, (
        "README.md's int8-by-CPU table differs from benchmarks/results: run python benchmarks/readme_results.py")


def test_every_results_file_has_a_row_and_a_md(readme_results):
    table = readme_results.block()
    for source in readme_results.SOURCES:
        assert (readme_results.RESULTS / source.path).is_file(), f"{source.path} is listed but missing"
        assert f"`benchmarks/{source.script}`" in table
    assert "no " + ".md" not in table and "missing" not in table


def test_a_results_file_without_a_row_is_an_error(readme_results, tmp_path):
    shutil.copytree(readme_results.RESULTS, tmp_path / "results")
    (tmp_path / "results" / "new_benchmark.json").write_text("{}")
    with pytest.raises(readme_results.ResultsError, match="new_benchmark.json"):
        readme_results.block(tmp_path / "results")


def test_a_file_without_machine_or_date_says_so(readme_results, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    soak = json.loads((readme_results.RESULTS / "soak.json").read_text())
    soak.pop("machine")
    soak.pop("date", None)
    (results / "soak.json").write_text(json.dumps(soak))
    rows = readme_results.block(results).splitlines()[2:]
    assert len(rows) == 1 and "machine not recorded; date not recorded" in rows[0]
    assert "no soak.md" in rows[0]


def test_check_mode_reports_a_stale_readme_and_rewriting_touches_only_the_block(readme_results, tmp_path):
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text()
    start = text.index(readme_results.BEGIN) + len(readme_results.BEGIN)
    stale = text[:start] + "\n| a typed row | 99 % |\n" + text[text.index(readme_results.END):]
    readme.write_text(stale)
    assert readme_results.main(["--check", "--readme", str(readme)]) == 1
    assert readme_results.main(["--readme", str(readme)]) == 0
    assert readme.read_text() == text
    readme.write_text("no markers here\n")
    assert readme_results.main(["--readme", str(readme)]) == 2


# script, its render-only arguments (OUT: a scratch folder), the committed results it reads and writes, and the
# name the script reads the .json under in OUT.
RENDERERS = [
    ("demo.py", ["--render-only", "--out", "OUT/demo"], "demo.json", "demo.md", "demo.json"),
    ("cifar10_mini.py", ["--render-only", "--out", "OUT/cifar10_mini"], "cifar10_mini/cifar10_mini.json",
     "cifar10_mini/cifar10_mini.md", "cifar10_mini.json"),
    ("pi_emulation.py", ["--render-only", "--out", "OUT/pi_emulation.json"], "pi_emulation.json",
     "pi_emulation.md", "pi_emulation.json"),
    ("tfdata_autotune.py", ["--render-only", "--out", "OUT"], "tfdata_autotune/tfdata_autotune.json",
     "tfdata_autotune/tfdata_autotune.md", "tfdata_autotune.json"),
    ("cifar10.py", ["--render-only", "--out", "OUT"], "cifar10/results.json", "cifar10/results.md", "results.json"),
    ("parity_cifar10.py", ["--render-only", "--out", "OUT/parity_cifar10"], "parity_cifar10.json",
     "parity_cifar10.md", "parity_cifar10.json"),
    ("airbench_reference.py", ["table", "--results", "OUT/airbench_reference.json"],
     "cifar10/airbench_reference.json", "cifar10/airbench_reference.md", "airbench_reference.json"),
]


@pytest.mark.parametrize(("script", "args", "json_file", "md_file", "json_in_out"), RENDERERS,
                         ids=[r[0] for r in RENDERERS])
def test_committed_md_is_what_its_script_writes_from_its_json(script, args, json_file, md_file, json_in_out,
                                                              tmp_path):
    """A results .md the current script would not write (edited by hand, or by an older writer) fails."""
    results = ROOT / "benchmarks" / "results"
    shutil.copy(results / json_file, tmp_path / json_in_out)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script),
                           *(a.replace("OUT", str(tmp_path)) for a in args)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    (written,) = tmp_path.glob("*.md")
    assert written.read_text() == (results / md_file).read_text(), f"{md_file} is not what {script} writes"
