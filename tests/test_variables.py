"""Every CODEX_API_PROXY_* variable is declared once (core/options.py: the option table, or
EXTRA_VARIABLES): one the package named anywhere else would be read, yet `main` would warn that it is a
misspelling and ignored."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from codex_api_proxy.core.options import ENV, KNOWN_VARIABLES

PACKAGE = Path(__file__).parent.parent / "codex_api_proxy"
VARIABLE = re.compile(r"CODEX_API_PROXY_[A-Z0-9_]+")


def named_variables(source: str) -> set[str]:
    """The variables a module names: in its string literals (docstrings and f-strings included) and as
    `ENV + "NAME"`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= set(VARIABLE.findall(node.value))
        elif (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Add)
            and isinstance(node.left, ast.Name)
            and node.left.id == "ENV"
            and isinstance(node.right, ast.Constant)
            and isinstance(node.right.value, str)
        ):
            found.add(ENV + node.right.value)
    return found


def test_the_finder_sees_literals_docstrings_and_env_sums() -> None:
    source = (
        '"""Set $CODEX_API_PROXY_A."""\nx = os.environ.get("CODEX_API_PROXY_B")\ny = ENV + "C"\nz = f"{ENV}*"'
    )
    assert named_variables(source) == {"CODEX_API_PROXY_A", "CODEX_API_PROXY_B", "CODEX_API_PROXY_C"}


def test_every_variable_the_package_names_is_registered() -> None:
    unknown = {
        str(path.relative_to(PACKAGE)): sorted(named_variables(path.read_text()) - KNOWN_VARIABLES)
        for path in PACKAGE.rglob("*.py")
    }
    assert {path: names for path, names in unknown.items() if names} == {}


def test_only_an_unregistered_variable_is_warned_about(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV)}
    env |= dict.fromkeys(KNOWN_VARIABLES, "1") | {ENV + "STATE_DIR": str(tmp_path), ENV + "PROT": "9000"}
    r = subprocess.run(
        [sys.executable, "-m", "codex_api_proxy", "addon-path"], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert f"${ENV}PROT is not a codex-api-proxy setting" in line and f"{ENV}PORT?" in line, line
