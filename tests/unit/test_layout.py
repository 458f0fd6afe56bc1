"""The house's layout: ``pipeline`` holds rooms (packages) only, and the import contracts
cover every production room from the day it is added."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import pipeline

ROOT = Path(__file__).resolve().parents[2]


def test_every_production_module_is_under_the_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    [production] = [c for c in contracts if c["name"].startswith("production never imports")]
    listed = {m for m in production["source_modules"] if m.startswith("pipeline.")}
    present = {
        f"pipeline.{module.name}"
        for module in pkgutil.iter_modules(pipeline.__path__)
        if module.name not in ("testing", "dev")
    }
    assert present - listed == set(), "add these to the contract in pyproject.toml"
    assert listed - present == set(), "these are gone: remove them from the contract"


def test_pipeline_holds_rooms_only() -> None:
    loose = [m.name for m in pkgutil.iter_modules(pipeline.__path__) if not m.ispkg]
    assert loose == [], "move these modules into the room (package) of their concern"
