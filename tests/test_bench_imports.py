"""Every bench module imports, on the product's public names only: a rename in search/ breaks here,
not silently in a benchmark run by hand."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
MODULES = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__main__")


@pytest.mark.parametrize("name", MODULES)
def test_a_bench_module_imports_and_uses_no_private_product_name(name):
    importlib.import_module(f"bench.{name}")
    tree = ast.parse((BENCH / f"{name}.py").read_text())
    private = [f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and (node.module or "").startswith("search") for alias in node.names if alias.name.startswith("_")]
    assert private == []
