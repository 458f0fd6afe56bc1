"""The topics' compatibility policy: every model is still readable by readers of its committed
JSON Schema (schemas/json/), and the check catches what breaks readers.

tests/unit/test_schemas.py checks that the committed files are *current*; this file checks
that the models are *compatible* with them (the export refuses to overwrite them otherwise).
The demonstrations build copies of real records in the test, never editing schemas/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import Field, create_model
from pydantic.fields import FieldInfo

from schemas import ALL_MODELS, OutboundMessage, Record
from schemas.compat import Incompatibility, check_compatible, incompatible_changes
from schemas.export import DEFAULT_FOLDER, main

pytestmark = pytest.mark.unit


def committed(stem: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((DEFAULT_FOLDER / f"{stem}.json").read_text())
    return schema


@pytest.mark.parametrize("stem", sorted(ALL_MODELS))
def test_model_is_compatible_with_its_committed_schema(stem: str) -> None:
    if not (DEFAULT_FOLDER / f"{stem}.json").is_file():
        pytest.skip("no committed schema yet (a new record); test_schemas asks for the export")
    model = ALL_MODELS[stem]
    problems = check_compatible(model.__name__, committed(stem), model.model_json_schema())
    assert not problems, (
        f"{model.__name__} breaks the compatibility policy of docs/topics.md against "
        f"schemas/json/{stem}.json:\n" + "\n".join(map(str, problems))
    )


# --- demonstrations on copies of OutboundMessage ------------------------------------------------

OUTBOUND = "outbound_message"
#: OutboundMessage's schema_version now, and the one a change of it needs.
CURRENT: int = OutboundMessage.model_fields["schema_version"].default
NEXT = CURRENT + 1


def variant(
    drop: tuple[str, ...] = (),
    change: dict[str, tuple[Any, Any]] | None = None,
    version: int | None = None,
) -> type[Record]:
    """A copy of OutboundMessage (same name, same fields) with fields dropped, changed or added
    (``change``: name -> (annotation, default or FieldInfo)), and another schema_version."""
    fields: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in OutboundMessage.model_fields.items()
        if name not in drop and name not in ("schema_version", "trace_id")
    }
    fields.update(change or {})
    fields["schema_version"] = (int, Field(version or CURRENT, ge=1))
    copy: type[Record] = create_model("OutboundMessage", __base__=Record, **fields)
    return copy


def problems_of(model: type[Record]) -> list[Incompatibility]:
    return check_compatible(model.__name__, committed(OUTBOUND), model.model_json_schema())


def only(problems: list[Incompatibility], field: str) -> Incompatibility:
    assert [p.field for p in problems] == [field], problems
    return problems[0]


def test_an_exact_copy_passes() -> None:
    assert problems_of(variant()) == []


def test_removing_a_field_is_caught() -> None:
    problem = only(
        problems_of(variant(drop=("reply_to_message_id",), version=NEXT)), "reply_to_message_id"
    )
    assert problem.model == "OutboundMessage"
    assert "removed" in str(problem)
    assert "never removed or renamed: put it back" in str(problem)


def test_renaming_a_field_is_caught_as_a_removal() -> None:
    renamed = variant(
        drop=("part",), change={"part_index": (int, FieldInfo(default=0))}, version=NEXT
    )
    problem = only(problems_of(renamed), "part")
    assert "removed (or renamed)" in problem.problem


@pytest.mark.parametrize(
    ("field", "annotation", "default", "was", "now"),
    [
        ("part", str, "0", "integer", "string"),
        ("turn_id", str, "", "string | null", "string"),  # no longer nullable
        ("created_at", str, "", "string(date-time)", "string"),
        ("text", int, 0, "string", "integer"),
    ],
)
def test_retyping_a_field_is_caught(
    field: str, annotation: Any, default: Any, was: str, now: str
) -> None:
    problem = only(problems_of(variant(change={field: (annotation, default)}, version=NEXT)), field)
    assert f"type changed from {was} to {now}" in problem.problem
    assert "add a new, optional field instead" in str(problem)


def test_removing_an_enum_value_is_caught_and_adding_one_passes() -> None:
    fewer = Literal["reply", "notice", "fallback"]
    more = Literal["reply", "notice", "fallback", "manual", "broadcast"]
    problem = only(problems_of(variant(change={"kind": (fewer, "reply")}, version=NEXT)), "kind")
    assert "enum lost ['manual']" in problem.problem
    assert problems_of(variant(change={"kind": (more, "reply")}, version=NEXT)) == []


def test_adding_a_required_field_is_caught() -> None:
    added = variant(change={"priority": (int, FieldInfo())}, version=NEXT)
    problem = only(problems_of(added), "priority")
    assert problem.problem == "is a new required field"
    assert "give it a default" in str(problem)


def test_making_an_optional_field_required_is_caught() -> None:
    required = variant(change={"reply_to_message_id": (str | None, FieldInfo())}, version=NEXT)
    assert "became required" in only(problems_of(required), "reply_to_message_id").problem


def test_adding_an_optional_field_passes_with_a_version_bump_only() -> None:
    optional = {"priority": (int | None, FieldInfo(default=None))}
    assert problems_of(variant(change=optional, version=NEXT)) == []
    problem = only(problems_of(variant(change=optional)), "schema_version")
    assert f"the schema changed but the schema_version default is still {CURRENT}" in (
        problem.problem
    )
    assert f"Field({NEXT}, ge=1)" in problem.advice


def test_documentation_needs_no_version_bump() -> None:
    described = variant(change={"text": (str, FieldInfo(min_length=1, description="the words"))})
    assert problems_of(described) == []


def test_nested_records_are_checked_field_by_field() -> None:
    # LLMResult carries a Turn and LLMCalls: a change inside them is named by its path.
    schema = committed("llm_result")
    broken = json.loads(json.dumps(schema))
    del broken["$defs"]["Turn"]["properties"]["seq"]
    broken["$defs"]["LLMCall"]["properties"]["status"]["enum"].remove("retry")
    broken["properties"]["schema_version"]["default"] = (
        schema["properties"]["schema_version"]["default"] + 1
    )
    fields = sorted(p.field for p in check_compatible("LLMResult", schema, broken))
    assert fields == ["calls[].status", "turn.seq"]


def test_export_refuses_an_incompatible_model_and_keeps_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 0
    before = (tmp_path / f"{OUTBOUND}.json").read_text()
    monkeypatch.setitem(ALL_MODELS, OUTBOUND, variant(drop=("part",), version=NEXT))
    capsys.readouterr()

    assert main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "incompatible: OutboundMessage.part: removed (or renamed)" in err
    assert "nothing written" in err
    assert (tmp_path / f"{OUTBOUND}.json").read_text() == before
    assert main(["--check", str(tmp_path)]) == 1
    assert [p.field for p in incompatible_changes(tmp_path)] == ["part"]

    monkeypatch.setitem(
        ALL_MODELS,
        OUTBOUND,
        variant(change={"priority": (int | None, FieldInfo(default=None))}, version=NEXT),
    )
    assert main([str(tmp_path)]) == 0, "a compatible change with a version bump is written"
    assert '"priority"' in (tmp_path / f"{OUTBOUND}.json").read_text()
