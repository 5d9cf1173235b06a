"""The package's layers (ARCHITECTURE.md, the contract in pyproject.toml): no module imports from a
layer above it, so there are no import cycles; checked by import-linter on the installed package."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import reluflow

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(reluflow.__file__).resolve().parent


def test_import_contract_is_kept():
    beside = Path(sys.executable).with_name("lint-imports")   # the test environment's own script
    exe = str(beside) if beside.exists() else shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports (import-linter, a test extra) is not installed: pip install '.[test]'")
    res = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Contracts: 1 kept, 0 broken" in res.stdout


def test_no_function_level_imports_of_the_package():
    """Imports of reluflow's own modules live at the top of a module (a function-level import would hide
    a cycle from the contract); only optional third-party packages (cupy) are imported on demand."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("reluflow")):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
                elif isinstance(node, ast.Import) and any(a.name.startswith("reluflow") for a in node.names):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []
