"""The run folder: its files, :func:`load_run` that reads them, :func:`write_report` that writes
the report into it.

:func:`load_run` pairs the two results of every turn by ``turn_id`` and says why a turn has a
result on one side only (:func:`pipeline.replay.reasons.missing_reason`); :func:`write_report`
writes ``report.md`` and ``report.html`` next to the run's files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from pipeline.replay.reasons import Side, load_evidence, missing_reason
from pipeline.replay.report.data import SIDES, Prices, RunData, RunInfo, TurnPair
from pipeline.replay.report.html import render_html
from pipeline.replay.report.markdown import render_markdown
from schemas import LLMResult, Turn

__all__ = [
    "REPORT_HTML",
    "REPORT_MD",
    "RESULT_FILES",
    "RUN_FILE",
    "TURNS_FILE",
    "load_run",
    "write_report",
]

RUN_FILE = "run.json"
TURNS_FILE = "turns.jsonl"
RESULT_FILES: dict[Side, str] = {"original": "original.jsonl", "replayed": "replayed.jsonl"}
REPORT_MD = "report.md"
REPORT_HTML = "report.html"


def _read_jsonl(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield number, line


def _load_results(path: Path, notes: list[str]) -> dict[str, LLMResult]:
    results: dict[str, LLMResult] = {}
    if not path.exists():
        notes.append(f"{path.name} is absent: every turn misses that side")
        return results
    duplicates = 0
    for number, line in _read_jsonl(path):
        try:
            result = LLMResult.model_validate_json(line)
        except ValidationError as exc:
            raise ValueError(f"{path}:{number}: not an LLMResult: {exc}") from exc
        if result.turn.turn_id in results:
            duplicates += 1
            continue
        results[result.turn.turn_id] = result
    if duplicates:
        notes.append(
            f"{path.name}: {duplicates} duplicate result(s) of a turn ignored (first kept)"
        )
    return results


def load_run(folder: Path) -> RunData:
    """Load the run folder ``folder`` and pair the results of both sides by turn id.

    Pairs follow ``turns.jsonl``; results for turns not in it follow, in the order they first
    appear (original, then replayed). Raises ``FileNotFoundError`` without ``run.json`` or
    ``turns.jsonl`` and ``ValueError`` (naming file and line) for a record that does not parse.
    An absent ``original.jsonl``/``replayed.jsonl`` is read as empty (and noted).
    """
    folder = Path(folder)
    run_path = folder / RUN_FILE
    try:
        info = RunInfo.model_validate_json(run_path.read_bytes())
    except ValidationError as exc:
        raise ValueError(f"{run_path}: not a replay run.json: {exc}") from exc
    notes: list[str] = []
    turns: list[Turn] = []
    seen: set[str] = set()
    for number, line in _read_jsonl(folder / TURNS_FILE):
        try:
            turn = Turn.model_validate_json(line)
        except ValidationError as exc:
            raise ValueError(f"{folder / TURNS_FILE}:{number}: not a Turn: {exc}") from exc
        if turn.turn_id in seen:
            notes.append(f"{TURNS_FILE}:{number}: turn {turn.turn_id} repeated, ignored")
            continue
        seen.add(turn.turn_id)
        turns.append(turn)
    original = _load_results(folder / RESULT_FILES["original"], notes)
    replayed = _load_results(folder / RESULT_FILES["replayed"], notes)
    evidence = load_evidence(folder, turns)
    evidence.add_turns("original", (result.turn for result in original.values()))
    evidence.add_turns("replayed", (result.turn for result in replayed.values()))

    def pair(turn: Turn, in_turns: bool = True) -> TurnPair:
        sides = {"original": original.get(turn.turn_id), "replayed": replayed.get(turn.turn_id)}
        reasons: dict[Side, str] = {
            side: missing_reason(turn, side, evidence) for side in SIDES if sides[side] is None
        }
        return TurnPair(turn, sides["original"], sides["replayed"], in_turns, reasons)

    pairs = [pair(t) for t in turns]
    extra = 0
    for results in (original, replayed):
        for turn_id, result in results.items():
            if turn_id not in seen:
                seen.add(turn_id)
                extra += 1
                pairs.append(pair(result.turn, in_turns=False))
    if extra:
        notes.append(f"{extra} result turn(s) not in {TURNS_FILE}: listed last")
    return RunData(folder=folder, info=info, pairs=pairs, notes=notes)


def write_report(folder: Path, prices: Prices | None = None) -> tuple[Path, Path]:
    """Load the run in ``folder`` and write ``report.md`` and ``report.html`` into it.

    ``prices``: model -> (USD per 1,000,000 prompt tokens, USD per 1,000,000 completion tokens);
    without it no cost is shown, and a model missing from it shows "no price". Returns
    ``(md_path, html_path)``.
    """
    folder = Path(folder)
    run = load_run(folder)
    md_path, html_path = folder / REPORT_MD, folder / REPORT_HTML
    md_path.write_text(render_markdown(run, prices), encoding="utf-8")
    html_path.write_text(render_html(run, prices), encoding="utf-8")
    return md_path, html_path
