"""One meaning per fixture name: a fixture is defined in one file only (shared ones in conftest.py).

Two files once each had a ``trained_run`` (the session's colour run in one, a run with a broken
image, int8, a benchmark and Grad-CAM in the other) and a ``tiny_run`` meaning two different runs;
a reader of one test could not know which was meant without opening its module.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return ast.unparse(target) in ("pytest.fixture", "fixture")


def fixture_definitions(folder: Path = TESTS) -> dict[str, list[str]]:
    """Fixture name -> the ``file:line`` places defining it, over every Python file in ``folder``."""
    found = defaultdict(list)
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(map(_is_fixture, node.decorator_list)):
                found[node.name].append(f"{path.name}:{node.lineno}")
    return found


def test_every_fixture_name_is_defined_once():
    twice = {name: places for name, places in fixture_definitions().items() if len(places) > 1}
    assert not twice, f"give each meaning its own name (shared ones in conftest.py): {twice}"


def test_the_check_sees_a_second_definition(tmp_path):
    for name in ("test_a.py", "test_b.py"):
        (tmp_path / name).write_text("import pytest\n\n\n@pytest.fixture(scope='module')\ndef run():\n    return 1\n")
    assert fixture_definitions(tmp_path) == {"run": ["test_a.py:5", "test_b.py:5"]}
