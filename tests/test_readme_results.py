"""The README's measured-results table is what benchmarks/readme_results.py writes from benchmarks/results."""

import importlib.util
import json
import shutil
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
