"""scripts/arch_stats.py: definitions and import edges counted as its docstring says."""

from __future__ import annotations

import ast
import subprocess

import pytest

from scripts.arch_stats import definitions, import_edges, measure, module_name

SOURCES = {
    "modelctl/__init__.py": '"""doc"""\n',
    "modelctl/errors.py": "class E(Exception):\n    pass\n",
    "modelctl/hub/__init__.py": '"""doc"""\n',
    "modelctl/hub/source.py": (
        "from modelctl.errors import E\n"
        "from modelctl import errors\n"  # the same file: one edge
        "from . import client\n"
        "from .client import C\n"  # client again
        "import json\n"
        "def f():\n"
        "    from modelctl.hub import client\n"
        "    def inner():\n"
        "        return 1\n"
        "    return inner\n"
    ),
    "modelctl/hub/client.py": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from modelctl.hub.source import f\n"
        "class C:\n"
        "    def m(self):\n"
        "        x = 1\n"
        "        return x\n"
    ),
}


def test_import_edges_resolve_to_files_and_split_module_level() -> None:
    trees = {p: ast.parse(s) for p, s in SOURCES.items()}
    # source -> errors, source -> client (module level); client -> source (TYPE_CHECKING,
    # inside an `if`: not at module level).
    assert import_edges(SOURCES, trees) == (3, 2)


def test_definitions_are_qualified_and_nested_ones_count() -> None:
    tree = ast.parse(SOURCES["modelctl/hub/source.py"])
    funcs = dict(definitions(tree, (ast.FunctionDef,)))
    assert funcs == {"f": 5, "f.inner": 2}
    classes = dict(definitions(ast.parse(SOURCES["modelctl/hub/client.py"]), (ast.ClassDef,)))
    assert classes == {"C": 4}
    assert module_name("modelctl/hub/__init__.py") == "modelctl.hub"


def _in_git() -> bool:
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.skipif(not _in_git(), reason="not a git checkout")
def test_it_measures_a_revision_from_git() -> None:
    stats = measure("HEAD")
    assert stats.modules > 40 and stats.subpackages >= 8
    assert stats.import_edges >= stats.import_edges_module_level > 100
