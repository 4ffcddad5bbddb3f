# SPDX-License-Identifier: MIT
"""The task API's command lines: `-s show`, `-s list`, `-s pause`,
`-s resume PATH` (`--enqueue Q --max N` is `cli.enqueue`'s).

`add_arguments` adds their options to waitd's parser (`--state`,
`--record`, `--max`, `--http`).  `command` asks the daemon through the
control socket (`daemon.sock.ask`; the daemon answers, `daemon.story`
and `daemon.pause`) and prints its answer: with `--json` the reply's
JSON as it came, else lines for a person.

Exit status: 0 done; 1 the daemon is not there or refused (a path it does
not know, a run it cannot pause).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from waitd.config.errors import EXIT_FAILURE, UsageError, WaitdError
from waitd.daemon import pidfile, sock
from waitd.decide.taskstate import STATES
from waitd.formats.history_line import escape

VERBS = ("show", "list", "pause", "resume")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", choices=STATES, help="with -s list: only the files in this state")
    p.add_argument("--record", metavar="N", type=_number, help="with -s list: only the files of record N")
    p.add_argument(
        "--max", metavar="N", type=_number, help="with --enqueue: refuse (exit 75) while QUEUE/incoming holds N files"
    )
    p.add_argument(
        "--http",
        metavar="[ADDR:]PORT",
        type=_address,
        help="serve the status page, /status.json, /files/PATH and /metrics there (ADDR default 127.0.0.1)",
    )


def _number(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1")
    return int(text)


def _address(text: str) -> tuple[str, int]:
    from waitd.config.confkeys import host_port  # and the options' module: not for every -s

    try:
        return host_port(text, "127.0.0.1")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def command(passdir: str, verb: str, paths: Sequence[str], args: argparse.Namespace) -> int:
    """`waitd -s show|list|pause|resume`; the exit status."""
    if pidfile.holder(passdir) is None:
        raise WaitdError(f"no waitd is running on {passdir}")
    if verb == "list":
        if paths:
            raise UsageError("-s list takes no PATH (--state S, --record N)")
        reply = sock.ask(passdir, {"cmd": "list", "state": args.state, "record": args.record})
        return _print_list(reply, args.json)
    if verb == "show":
        if len(paths) != 1:
            raise UsageError("-s show needs one PATH")
        reply = sock.ask(passdir, {"cmd": "show", "path": os.path.abspath(paths[0])})
        return _print_show(reply, args.json)
    if not paths:
        raise UsageError(f"-s {verb} needs one or more PATHs")
    return ask_files(passdir, verb, paths)


def ask_files(passdir: str, verb: str, paths: Sequence[str]) -> int:
    """Ask the daemon to act on files (retry, cancel, pause, resume); a
    line for each, on standard output when done, else on standard error."""
    reply = sock.ask(passdir, {"cmd": verb, "paths": [os.path.abspath(p) for p in paths]})
    if "results" not in reply:
        raise WaitdError(str(reply.get("error", "the daemon refused the request")))
    for result in reply["results"]:
        stream = sys.stdout if result.get("ok") else sys.stderr
        print(f"waitd: {escape(str(result.get('path')))}: {result.get('message')}", file=stream)
    return 0 if reply.get("ok") else EXIT_FAILURE


def _refused(reply: dict[str, Any]) -> int:
    print(f"waitd: {reply.get('error', 'the daemon refused the request')}", file=sys.stderr)
    return EXIT_FAILURE


def _print_list(reply: dict[str, Any], as_json: bool) -> int:
    if not reply.get("ok"):
        return _refused(reply)
    if as_json:
        json.dump(reply["files"], sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    for item in reply["files"]:
        sys.stdout.write(f"{item['state']:<9} record {item['record']}: {item['file']}{_detail(item)}\n")
    return 0


def _detail(item: dict[str, Any]) -> str:
    if item.get("why"):
        return f" ({item['why']})"
    for key, label in (("ready_at", "ready"), ("retry_at", "retried")):
        if item.get(key) is not None:
            return f" ({label} {_when(item[key])})"
    return ""


def _when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _print_show(reply: dict[str, Any], as_json: bool) -> int:
    if not reply.get("ok"):
        return _refused(reply)
    if as_json:
        json.dump(reply, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    out = [reply["path"]]
    for story in reply["records"]:
        out.append(
            f"record {story['record']} ({story['telem']}) -> {story['process']}: {story['state']}{_detail(story)}"
        )
        run = story.get("run")
        if run is not None:
            where = f"pid {run['pid']}" if run.get("task") is None else f"celery task {run['task']}"
            out.append(
                f"  now: attempt {run['attempt']}, {run['state']} ({where}) for {run['age_s']:.1f} s, log {run['log']}"
            )
        for a in story["attempts"]:
            how = _how(a)
            out.append(f"  attempt {a['attempt']}: {_when(a['start'])} .. {_when(a['end'])}: {how}")
            if a.get("log"):
                out.append(f"    log: {a['log']}")
            if a.get("response") is not None:
                out.append(f"    response: {json.dumps(a['response'])}")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _how(a: dict[str, Any]) -> str:
    if a["end"] is None and a["start"] is not None:
        return "running (no end written)"
    parts = []
    if a.get("exit") is not None:
        parts.append(f"exit {a['exit']}")
    if a.get("signal"):
        parts.append(f"signal {a['signal']}")
    if a.get("error"):
        parts.append(f"error {a['error']}")
    if a.get("retry_at") is not None:
        parts.append(f"retry at {_when(a['retry_at'])}")
    return ", ".join(parts) or "ended"
