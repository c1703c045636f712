"""The public API: cheap to import, documented, and the README's example runs as written."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgecls
from edgecls import api, results
from edgecls.errors import EdgeclsError

REPO = Path(__file__).resolve().parents[1]

NO_TENSORFLOW_PROBE = """
import sys
import edgecls
functions = [getattr(edgecls, name) for name in edgecls.__all__]  # loads edgecls.api and its results
import edgecls.cli, edgecls.cli.docs
sys.argv = ["edgecls", "--help"]
try:
    edgecls.cli.main()
except SystemExit as exit_info:
    assert exit_info.code in (0, None), exit_info.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras", "tf2onnx", "onnx"))
print("HEAVY", heavy)
"""


def test_import_edgecls_and_help_import_no_tensorflow():
    result = subprocess.run([sys.executable, "-c", NO_TENSORFLOW_PROBE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout.splitlines()[-1]
    assert "Commands:" in result.stdout


def test_every_public_name_is_documented_with_an_example():
    assert sorted(edgecls.__all__) == sorted(api.__all__) == sorted(
        ["train", "evaluate", "quantize", "prune", "export", "optimize", "search", "predict", "bench", "bundle",
         "gradcam", "report", "list_models", "check_device"])
    for name in edgecls.__all__:
        function = getattr(edgecls, name)
        assert function is getattr(api, name)
        doc = function.__doc__ or ""
        assert ">>>" in doc or "Example" in doc, name
        assert len(doc.split("\n\n")[0]) > 20, name  # a first paragraph that says what it does
        assert "return" in function.__annotations__, f"{name} declares no result type"
    for name in results.__all__:
        if name != "jsonable":
            assert getattr(results, name).__doc__, name


def _classes_in(annotation) -> set[type]:
    import typing

    found = {annotation} if isinstance(annotation, type) and annotation.__module__.startswith("edgecls") else set()
    for argument in typing.get_args(annotation):
        found |= _classes_in(argument)
    return found


def test_result_types_are_defined_once_in_edgecls_results():
    import ast
    import typing

    returned = set()
    for name in api.__all__:
        returned |= _classes_in(typing.get_type_hints(getattr(api, name))["return"])
    assert returned and {cls.__module__ for cls in returned} == {"edgecls.results"}, returned
    # No second definition, and no result type elsewhere (two TrainResult classes were once copied field by field).
    names = set(results.__all__)
    elsewhere = []
    for path in sorted((REPO / "edgecls").rglob("*.py")):
        if path.name == "results.py" and path.parent.name == "edgecls":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and (node.name in names or node.name.endswith("Result")):
                elsewhere.append(f"{path.relative_to(REPO)}:{node.lineno} class {node.name}")
    assert not elsewhere, elsewhere


def test_subpackages_do_not_hide_the_functions_of_the_same_name():
    import edgecls.benchmarking.harness  # noqa: F401  (binds the subpackage in a plain package)
    import edgecls.compression.quantization  # noqa: F401
    import edgecls.training.trainer  # noqa: F401
    from edgecls.training import trainer

    assert edgecls.train is api.train and edgecls.optimize is api.optimize and edgecls.bench is api.bench
    assert callable(trainer.train) and trainer.train is not api.train


def test_list_models_and_config_mistakes_without_training(tmp_path):
    assert {"tiny_cnn", "mobilenet_v3_small", "resnet9"} <= set(edgecls.list_models())
    assert "tiny_cnn" not in edgecls.list_models(include_test_only=False)
    with pytest.raises(EdgeclsError, match="give the DATA folder"):
        edgecls.train(out=tmp_path / "run", config={"model": {"arch": "tiny_cnn"}})
    with pytest.raises(EdgeclsError, match="unknown option 'train.nope'"):
        edgecls.train(tmp_path, tmp_path / "run", overrides={"train": {"nope": 1}})
    with pytest.raises(EdgeclsError, match="config not found"):
        edgecls.train(tmp_path, tmp_path / "run", config=tmp_path / "missing.yaml")
    assert not (tmp_path / "run").exists()
    # A shipped recipe by name: it resolves, and training stops at the missing data, not at the config.
    with pytest.raises(EdgeclsError, match="dataset not found"):
        edgecls.train(tmp_path / "nowhere", tmp_path / "recipe_run", config="cifar10_resnet9")


def readme_python_example() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's Python API section has no python block"
    return blocks[0]


def test_readme_python_api_example_runs(tmp_path, make_images, monkeypatch, capsys):
    make_images(tmp_path / "flowers", classes=("daisy", "rose", "tulip"), per_class=12)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(readme_python_example(), "README.md (Python API)", "exec"), namespace)  # noqa: S102

    run, int8, rows = namespace["run"], namespace["int8"], namespace["rows"]
    assert isinstance(run, results.TrainResult) and run.run_dir == Path("runs/flowers")
    assert (run.run_dir / "model.keras").is_file() and 0.0 <= run.accuracy <= 1.0
    assert run.to_dict()["metrics"] == json.loads((run.run_dir / "metrics.json").read_text())
    assert isinstance(int8, results.ExportRecord) and int8.path == run.run_dir / "exports" / "int8.tflite"
    assert int8.path.is_file() and int8.path.with_suffix(".json").is_file()
    assert [r["runtime"] for r in rows] == ["tflite"] and rows[0]["latency_ms"]["p50"] > 0
    assert rows[0]["images"] == 36  # bench measured on every image of data="flowers"
    printed = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("flowers/daisy/") for line in printed) == 12  # one predict record per image

    # predict returns exactly what `edgecls predict --json` prints
    from edgecls.cli import main

    with pytest.raises(SystemExit):
        main(["predict", str(int8.path), "flowers/daisy", "--top-k", "2", "--json"])
    assert json.loads(capsys.readouterr().out) == edgecls.predict(int8.path, "flowers/daisy", top_k=2)
