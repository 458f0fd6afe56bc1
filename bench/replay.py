"""Replay speed beside the live pipeline's, measured in one run with the instant stand-in.

(a) Live: ``--chats`` x ``--turns-per-chat`` messages produced up front to a worker with an
    instant LLM (stand-in latency 0); turns per second from the first produce to the last
    outbound reply; every reply checked for order and completeness.
(b) Replay: the worker is stopped and ``faust -A pipeline replay --since -6h`` reruns the
    whole recording, as a user would run it, with the same settings and stand-in; turns per
    second from the replay worker's start to the last reply applied, and without the
    worker's start-up (its "worker ready in" line). The replay must make the same turns and
    the same replies (its report's changed count is 0), or the run exits non-zero.

    .venv/bin/python -m bench.replay --chats 1000 --turns-per-chat 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import (
    FAUST,
    REPO,
    Bench,
    Collector,
    CpuMeter,
    add_common_args,
    check_replies,
    correctness_lines,
    cpu_line,
    emit,
    expected_per_chat,
    machine,
    produce_all,
    rates,
    round_robin_turns,
    run_main,
    say,
)
from pipeline.replay.report.run_folder import load_run


async def live(bench: Bench, args: argparse.Namespace, meter: CpuMeter) -> dict[str, Any]:
    turns = args.chats * args.turns_per_chat
    records = round_robin_turns(bench.run, args.chats, turns)
    out = Collector(bench.bootstrap, bench.topics["outbound"])
    await out.start()
    say(f"(a) live: producing {turns} turns over {args.chats} chats")
    meter.start()
    produced = await produce_all(bench.bootstrap, bench.topics["inbound"], records)
    complete = await out.wait_for(turns, args.stall_timeout, args.settle)
    cpu = meter.stop(turns)
    await out.stop()
    return {
        "complete": complete,
        **rates(list(out.replies), produced.started),
        "duplicates": out.duplicates,
        "check": check_replies(list(out.replies), expected_per_chat(args.chats, turns)),
        "cpu": cpu,
    }


def replay(bench: Bench, env: dict[str, str]) -> dict[str, Any]:
    runs = Path(env["WABOT_DATA_DIR"]) / "replays"
    say("(b) replay: faust -A pipeline replay --since -6h")
    started = time.monotonic()
    proc = subprocess.run(
        [FAUST, "-A", "pipeline", "replay", "--since", "-6h", "--stall-timeout", "120"],
        cwd=REPO,
        # INFO: the replay worker's "worker ready in" line is read below.
        env={**os.environ, **env, "WABOT_LOG_LEVEL": "INFO"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    command_s = time.monotonic() - started
    if proc.returncode != 0 or not runs.exists():
        say(f"the replay failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return {"exit_code": proc.returncode}
    folder = max(runs.iterdir(), key=lambda p: p.stat().st_mtime)
    state = json.loads((folder / "run.json").read_text())
    log = (folder / "worker.log").read_text(errors="replace")
    ready = re.search(r"worker ready in ([0-9.]+)s", log)
    ready_s = float(ready.group(1)) if ready else 0.0
    run = load_run(folder)
    turns = int(state["counts"]["turns"])
    seconds = float(state["run_seconds"])
    return {
        "exit_code": 0,
        "turns": turns,
        "compared": run.compared,
        "changed": run.changed,
        "command_s": round(command_s, 2),
        "run_s": seconds,
        "worker_ready_s": ready_s,
        "per_s_with_start": round(turns / seconds, 1),
        "per_s_after_ready": round(turns / max(seconds - ready_s, 0.001), 1),
        "summary": proc.stdout.strip().splitlines()[-4:],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--turns-per-chat", type=int, default=10)
    add_common_args(parser)
    args = parser.parse_args()
    with Bench(args, "replay") as bench:
        bench.start_broker()
        url = bench.start_standin(0.0)
        env = bench.pipeline_env(url)
        worker = bench.start_worker(env)
        meter = CpuMeter(bench.cpu_pids(worker))
        live_figures = asyncio.run(live(bench, args, meter))
        bench.stop_worker(worker)  # the replay runs alone, as it would after hours
        replay_figures = replay(bench, env)
    turns = args.chats * args.turns_per_chat
    check = live_figures["check"]
    ok = (
        live_figures["complete"]
        and check["missing_turns"] == 0
        and check["chats_out_of_order"] == 0
        and replay_figures.get("exit_code") == 0
        and replay_figures.get("turns") == turns
        and replay_figures.get("compared") == turns
        and replay_figures.get("changed") == 0
    )
    lines = [
        f"{args.chats} chats x {args.turns_per_chat} turns, instant LLM stand-in, "
        f"{args.partitions} partitions",
        f"(a) live pipeline: {live_figures.get('per_s_from_produce')} turns/s from the first "
        f"produce to the last reply",
        *correctness_lines(check, live_figures["duplicates"]),
        "  " + cpu_line(live_figures["cpu"]),
    ]
    if replay_figures.get("exit_code") == 0:
        lines += [
            f"(b) replay: {replay_figures['per_s_with_start']} turns/s from the replay worker's "
            f"start to the last reply ({replay_figures['run_s']}s), "
            f"{replay_figures['per_s_after_ready']} turns/s after it was ready "
            f"({replay_figures['worker_ready_s']}s); the whole command "
            f"{replay_figures['command_s']}s",
            f"  same turns and replies: {replay_figures['compared']} compared, "
            f"{replay_figures['changed']} changed",
        ]
    else:
        lines.append(f"(b) replay FAILED: exit code {replay_figures.get('exit_code')}")
    lines.append(f"result: {'OK' if ok else 'PROBLEMS'}")
    emit(
        "bench.replay: replay speed beside the live pipeline",
        lines,
        {"machine": machine(), "live": live_figures, "replay": replay_figures, "ok": ok},
    )
    return 0 if ok else 1


if __name__ == "__main__":
    run_main(main)
