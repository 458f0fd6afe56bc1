"""Is a record's schema still readable by those who read the committed one?

The topics' compatibility policy (docs/topics.md): fields are only added, never removed,
renamed or retyped; a new field is optional; enum values may be added; and any change of a
record's schema bumps its ``schema_version``. :func:`check_compatible` compares two JSON
Schemas as pydantic writes them (``model_json_schema()``, the files in ``schemas/json/``)
against those rules; ``python -m schemas.export`` refuses to overwrite a committed schema
with an incompatible one, and ``tests/unit/test_schema_compat.py`` fails on one.

Compared: every property (nested records and list items included) by ``type``, ``format``,
``enum`` (values may only grow), ``const`` and nullability; which properties are required;
and the ``schema_version`` default. Not compared: constraints such as ``minLength``,
``pattern`` or ``maximum``, and documentation (``description``, ``title``), which needs no
version bump.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas import ALL_MODELS

__all__ = ["Incompatibility", "check_compatible", "incompatible_changes"]

#: Keys that document a schema without changing what a record may hold.
DOC_KEYS = frozenset({"description", "title", "examples"})
#: Keys whose value maps names to schemas (the names are data, not schema keywords).
_NAME_MAPS = frozenset({"properties", "$defs", "patternProperties"})

Schema = Mapping[str, Any]


@dataclass(frozen=True)
class Incompatibility:
    """One broken rule: the model (class name), the field (dotted path, ``[]`` for list
    items), what changed and what to do instead."""

    model: str
    field: str
    problem: str
    advice: str

    def __str__(self) -> str:
        return f"{self.model}.{self.field}: {self.problem}; {self.advice}"


_KEEP = "fields are never removed or renamed: put it back (say it is deprecated in its description)"
_RETYPE = "a field's type never changes: keep this one and add a new, optional field instead"
_REQUIRE = "new fields and existing optional fields stay optional: give it a default"
_ENUM = "enum values are only added, never removed"


def check_compatible(model: str, committed: Schema, current: Schema) -> list[Incompatibility]:
    """Every way ``current`` breaks readers of ``committed``; empty when compatible.

    Both are top-level JSON Schemas of one record (with their ``$defs``); ``model`` names it
    in the messages.
    """
    out: list[Incompatibility] = []
    _compare_object(model, "", committed, current, committed, current, out)
    if _shape(committed) != _shape(current):
        old, new = _version(committed), _version(current)
        if old is not None and (new is None or new <= old):
            out.append(
                Incompatibility(
                    model,
                    "schema_version",
                    f"the schema changed but the schema_version default is still {new} "
                    f"(committed: {old})",
                    f"bump it in the model (schema_version: int = Field({old + 1}, ge=1)), "
                    "then run python -m schemas.export",
                )
            )
    return out


def incompatible_changes(
    folder: Path, models: Mapping[str, type[Any]] | None = None
) -> list[Incompatibility]:
    """Check each model of ``models`` (default :data:`schemas.ALL_MODELS`, by file stem)
    against its committed ``<stem>.json`` in ``folder``; a model without a file is new and
    passes. Raises ``OSError`` or ``ValueError`` when a file cannot be read as JSON."""
    out: list[Incompatibility] = []
    for stem, model in (ALL_MODELS if models is None else models).items():
        path = folder / f"{stem}.json"
        if path.is_file():
            committed = json.loads(path.read_text(encoding="utf-8"))
            out.extend(check_compatible(model.__name__, committed, model.model_json_schema()))
    return out


# --- comparison -------------------------------------------------------------------------------


def _compare_object(
    model: str,
    path: str,
    old: Schema,
    new: Schema,
    old_root: Schema,
    new_root: Schema,
    out: list[Incompatibility],
) -> None:
    old_props: Mapping[str, Schema] = old.get("properties", {})
    new_props: Mapping[str, Schema] = new.get("properties", {})
    for name, old_sub in old_props.items():
        where = f"{path}.{name}" if path else name
        if name not in new_props:
            out.append(Incompatibility(model, where, "removed (or renamed)", _KEEP))
        else:
            _compare(model, where, old_sub, new_props[name], old_root, new_root, out)
    old_required = set(old.get("required", ()))
    for name in sorted(set(new.get("required", ())) - old_required):
        where = f"{path}.{name}" if path else name
        what = "became required" if name in old_props else "is a new required field"
        out.append(Incompatibility(model, where, what, _REQUIRE))


def _compare(
    model: str,
    path: str,
    old: Schema,
    new: Schema,
    old_root: Schema,
    new_root: Schema,
    out: list[Incompatibility],
) -> None:
    old_branches = _branches(old, old_root)
    new_branches = _branches(new, new_root)
    old_kinds = sorted(map(_kind, old_branches))
    if old_kinds != sorted(map(_kind, new_branches)):
        out.append(
            Incompatibility(
                model,
                path,
                f"type changed from {_label(old_branches)} to {_label(new_branches)}",
                _RETYPE,
            )
        )
        return
    by_kind = {_kind(branch): branch for branch in new_branches}
    for branch in old_branches:
        _compare_branch(model, path, branch, by_kind[_kind(branch)], old_root, new_root, out)


def _compare_branch(
    model: str,
    path: str,
    old: Schema,
    new: Schema,
    old_root: Schema,
    new_root: Schema,
    out: list[Incompatibility],
) -> None:
    if "enum" in old:
        lost = [value for value in old["enum"] if value not in new["enum"]]
        if lost:
            out.append(Incompatibility(model, path, f"enum lost {lost}", _ENUM))
    if old.get("const", _MISSING) != new.get("const", _MISSING):
        out.append(Incompatibility(model, path, "its constant value changed", _RETYPE))
    if "items" in old:
        item_path = f"{path}[]"
        _compare(model, item_path, old["items"], new.get("items", {}), old_root, new_root, out)
    if isinstance(old.get("additionalProperties"), Mapping):
        new_values = new.get("additionalProperties")
        if isinstance(new_values, Mapping):
            value_path = f"{path}{{}}"
            old_values = old["additionalProperties"]
            _compare(model, value_path, old_values, new_values, old_root, new_root, out)
    if "properties" in old:
        _compare_object(model, path, old, new, old_root, new_root, out)


_MISSING = object()


def _resolve(schema: Schema, root: Schema) -> Schema:
    """Follow ``$ref`` (``#/$defs/Name``) within ``root``; sibling keys are kept."""
    seen = 0
    while "$ref" in schema and seen < 32:
        ref = str(schema["$ref"])
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        schema = {**{k: v for k, v in schema.items() if k != "$ref"}, **target}
        seen += 1
    return schema


def _branches(schema: Schema, root: Schema) -> list[Schema]:
    schema = _resolve(schema, root)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return [_resolve(branch, root) for branch in schema[key]]
    return [schema]


def _kind(schema: Schema) -> tuple[str, str, bool]:
    """What a value of this branch is: JSON type, format, and whether it is an enum."""
    kind = schema.get("type", "any")
    if "enum" in schema and "type" not in schema:
        kind = "enum"
    return (str(kind), str(schema.get("format", "")), "enum" in schema)


def _label(branches: list[Schema]) -> str:
    labels = []
    for branch in branches:
        kind, fmt, enum = _kind(branch)
        label = f"{kind}({fmt})" if fmt else kind
        labels.append(f"enum of {label}" if enum else label)
    return " | ".join(labels)


def _version(schema: Schema) -> int | None:
    default = schema.get("properties", {}).get("schema_version", {}).get("default")
    return default if isinstance(default, int) else None


def _shape(node: Any, names: bool = False) -> Any:
    """``node`` without documentation keys (property names are kept, whatever they are)."""
    if isinstance(node, Mapping):
        if names:
            return {key: _shape(value) for key, value in node.items()}
        return {
            key: _shape(value, key in _NAME_MAPS)
            for key, value in node.items()
            if key not in DOC_KEYS
        }
    if isinstance(node, list):
        return [_shape(item) for item in node]
    return node
