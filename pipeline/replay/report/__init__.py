"""The compare report of a replay run: what the live bot answered next to what the replay answered.

A replay run folder ``<data_dir>/replays/<run_id>/`` holds ``run.json``, ``turns.jsonl`` (one
:class:`schemas.Turn` per line, in topic order), ``original.jsonl`` and ``replayed.jsonl`` (one
:class:`schemas.LLMResult` per line each; either may lack some turns), and what each side did with
the messages besides answering them (:mod:`pipeline.replay.reasons`).

- :mod:`~pipeline.replay.report.data`: the report's numbers (the run's turns paired by side,
  per-turn metrics, totals, tokens and cost by model, percentiles);
- :mod:`~pipeline.replay.report.run_folder`: the run folder's files, :func:`load_run` that reads
  them and :func:`write_report` that writes ``report.md`` and ``report.html`` into it;
- :mod:`~pipeline.replay.report.formatting`: numbers as text, shared by both renderings, and
  :func:`summary_line`, the one line a terminal shows at the end of a replay;
- :mod:`~pipeline.replay.report.markdown`: ``report.md``;
- :mod:`~pipeline.replay.report.html`: ``report.html`` (one self-contained page: inline CSS, no
  script, no network).

Units everywhere: latency in milliseconds, lengths in characters (Python ``len``, so one code
point is one character), tokens as the LLM endpoint counted them, cost in USD from a price table
of USD per 1,000,000 tokens.
"""
