"""Write each record's JSON Schema to ``schemas/json/`` so non-Python consumers can read the topics.

python -m schemas.export            # regenerate
python -m schemas.export --check    # exit 1 when a file is stale, missing or left over

Both refuse a model that breaks the compatibility policy against its committed file (a field
removed, renamed, retyped or newly required, or a change without a schema_version bump; see
schemas/compat.py): the committed file is then left as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from schemas import ALL_MODELS
from schemas.compat import Incompatibility, incompatible_changes

__all__ = [
    "DEFAULT_FOLDER",
    "IncompatibleSchemaError",
    "render_json_schemas",
    "stale_json_schemas",
    "write_json_schemas",
]

#: The ``json`` folder next to this module, where the committed schemas live.
DEFAULT_FOLDER = Path(__file__).resolve().parent / "json"


class IncompatibleSchemaError(Exception):
    """A model breaks the compatibility policy against its committed schema file."""

    def __init__(self, problems: list[Incompatibility]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def render_json_schemas() -> dict[str, str]:
    """File name -> text, for every model in :data:`schemas.ALL_MODELS`."""
    return {
        f"{stem}.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for stem, model in ALL_MODELS.items()
    }


def write_json_schemas(folder: Path) -> list[Path]:
    """Write every schema into ``folder`` and delete ``*.json`` files no model produces.

    The folder belongs to this function: a schema of a removed model must not linger.
    Returns the paths written. Raises :class:`IncompatibleSchemaError`, writing nothing,
    when a model breaks the compatibility policy against its file in ``folder``.
    """
    if folder.is_dir():
        problems = incompatible_changes(folder)
        if problems:
            raise IncompatibleSchemaError(problems)
    folder.mkdir(parents=True, exist_ok=True)
    rendered = render_json_schemas()
    for leftover in folder.glob("*.json"):
        if leftover.name not in rendered:
            leftover.unlink()
    written = []
    for name, text in rendered.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_json_schemas(folder: Path) -> list[str]:
    """Describe each file in ``folder`` that differs from the models, and each incompatible
    change (see :mod:`schemas.compat`); empty when up to date."""
    rendered = render_json_schemas()
    problems = [f"incompatible: {problem}" for problem in incompatible_changes(folder)]
    for name, text in rendered.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"missing: {path}")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"stale: {path}")
    problems.extend(
        f"left over: {path}" for path in sorted(folder.glob("*.json")) if path.name not in rendered
    )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.export", description="Export the records' JSON Schemas."
    )
    parser.add_argument(
        "folder", nargs="?", type=Path, default=DEFAULT_FOLDER, help="default: %(default)s"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the files are out of date"
    )
    args = parser.parse_args(argv)
    folder: Path = args.folder
    if args.check:
        problems = stale_json_schemas(folder)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run python -m schemas.export", file=sys.stderr)
            return 1
        print(f"{len(ALL_MODELS)} JSON Schemas in {folder} are up to date")
        return 0
    try:
        written = write_json_schemas(folder)
    except IncompatibleSchemaError as exc:
        for incompatibility in exc.problems:
            print(f"incompatible: {incompatibility}", file=sys.stderr)
        print(f"nothing written to {folder}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
