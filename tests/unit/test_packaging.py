"""The wheel pip builds from this repo: every package in it, and no setuptools warnings.

A package missing from the setuptools configuration is missing from every non-editable
install (the compose image); a data folder not declared as a package makes `pip install`
print a wall of BuildBackendWarning.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO


def test_the_wheel_holds_every_package_and_the_build_warns_of_nothing(tmp_path: Path) -> None:
    source = tmp_path / "src"
    # A clean copy of what git tracks (no .venv, no node_modules, no build leftovers).
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        path = Path(name.decode())
        if not (REPO / path).is_file():
            continue  # deleted in the work tree
        target = source / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO / path).read_bytes())
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "dist"), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    output = build.stdout + build.stderr
    assert "Warning" not in output, output[-3000:]
    wheel = next((tmp_path / "dist").glob("wabot-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {
        str(init.parent.relative_to(source))
        for top in ("pipeline", "agents", "tables", "schemas")
        for init in (source / top).rglob("__init__.py")
    }
    missing = sorted(p for p in packages if f"{p}/__init__.py" not in names)
    assert not missing, f"packages missing from the wheel: {missing}"
    for data in ("schemas/json/inbound_message.json", "pipeline/dev/lookalike/static/wpp.js"):
        assert data in names
