# SPDX-License-Identifier: MIT
"""ISIS autoreduction replies (`format = isis`) against a real ActiveMQ.

Queue files holding ISIS messages (what a `[source]` writes) run through a
handler that leaves each kind of response; a stomp.py consumer reads the
four ISIS destinations.  The replies carry the original message, nested
values and all, with the outcome in ISIS's fields, and the event's id in
a header.  First, with no broker where the sink points, waitd is killed
(SIGKILL) after a run ended and before any reply could go: started again
with the broker there, it sends the replies from its outbox.

The pure part (`formats.isis.reply`) has its unit test here too.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from conftest import Station, wait_for
from peers.activemq import free_port

from waitd.formats import events as ev
from waitd.formats import isis
from waitd.sinks import stomp
from waitd.spool import queue as q

KINDS = ("started", "complete", "error", "skipped")

HANDLER = """\
case "$(basename "$1")" in
  ok*) echo "reducing $1"; printf '{"output_dirs": ["/ceph/out"]}' > "$WAITD_RESPONSE";;
  skip*) printf '{"skip": "not in event mode"}' > "$WAITD_RESPONSE";;
  again*) if [ "$WAITD_ATTEMPT" = 1 ]; then printf '{"retry_in": 0.2}' > "$WAITD_RESPONSE"; exit 75; fi;;
  bad*) echo "Traceback: boom" >&2; echo '{"half": ' > "$WAITD_RESPONSE"; exit 1;;
esac
"""


def message(run: int, name: str) -> dict:
    return {
        "instrument": "GEM",
        "run_number": run,
        "rb_number": 1920000 + run,
        "run_version": 0,
        "data": f"/isis/NDXGEM/Instrument/data/cycle_20_1/GEM{run:05d}.nxs",
        "reduction_script": "/isis/NDXGEM/user/scripts/autoreduction/reduce.py",
        "reduction_arguments": {"standard_vars": {"mode": name}, "advanced_vars": {}},
        "facility": "ISIS",
        "started_by": -1,
        "description": f"run {name}",
    }


def test_the_reply_of_each_outcome_carries_the_message():
    msg = message(7, "x")
    started = isis.reply({"type": "started", "body": msg, "fields": {"no": 1}}, 0.0)
    assert started == ("started", msg)
    kind, body = isis.reply(
        {"type": "ended", "outcome": "retrying", "retry_at": 130.0, "exit": 75, "body": msg, "log": "L",
         "admin_log": "A", "response": {"retry_in": 30, "output_dirs": ["/o"]}},
        100.0,
    )  # fmt: skip
    assert kind == "error" and body["retry_in"] == 30.0 and body["message"] == "exit status 75"
    assert body["reduction_log"] == "L" and body["admin_log"] == "A" and body["output_dirs"] == ["/o"]
    assert {k: body[k] for k in msg} == msg
    kind, body = isis.reply({"type": "ended", "outcome": "skipped", "exit": 0, "response": {"skip": "why"}}, 0.0)
    assert kind == "skipped" and body["message"] == "why" and body["retry_in"] is None and "skip" not in body
    kind, body = isis.reply({"type": "ended", "outcome": "failed", "signal": "KILL", "fields": {"a": 1}}, 0.0)
    assert kind == "error" and body["message"] == "killed by signal KILL" and body["a"] == 1
    kind, body = isis.reply({"type": "ended", "outcome": "ok", "exit": 0}, 0.0)
    assert kind == "complete" and body["message"] is None
    assert isis.reply({"type": "ready"}, 0.0) is None
    assert isis.body_of(b"[1]") is None and isis.body_of(b"{") is None and isis.body_of(b'{"a": 1}') == {"a": 1}


def test_a_skipped_run_goes_to_skipped_or_else_complete_and_isis_defaults_to_its_queues():
    about = ev.About(1, "x", None, "h", path="/in/a.json")
    skipped = ev.Ended("e1", 0.0, about, outcome="skipped", exit=0, response={"skip": "why"})
    assert stomp.message(skipped, {"skipped": "/queue/S", "complete": "/queue/C"}, 0.0)[0] == "/queue/S"  # type: ignore[index]
    assert stomp.message(skipped, {"complete": "/queue/C"}, 0.0)[0] == "/queue/C"  # type: ignore[index]
    where, body = stomp.message(skipped, {"format": "isis"}, 0.0)  # type: ignore[misc]
    assert where == "/queue/ReductionSkipped" and body["message"] == "why"
    started = ev.Started("e2", 0.0, about, body={"run_number": 7})
    assert stomp.message(started, {"format": "isis", "started": "/queue/Mine"}, 0.0) == (
        "/queue/Mine",
        {"run_number": 7},
    )


def conf(port: int, queues: dict[str, str]) -> str:
    lines = [f"[sink isis]\ntype = stomp\nformat = isis\nport = {port}\nretry = 0.1\nretry-max = 0.3\n"]
    lines += [f"{kind} = {queues[kind]}\n" for kind in KINDS]
    return "".join(lines)


def enqueue(root: Path, name: str, body: dict) -> None:
    tmp = root / "tmp" / name
    tmp.write_text(json.dumps(body))
    os.rename(tmp, root / "incoming" / name)


def test_isis_replies_with_the_original_message_and_after_a_kill_9_from_the_outbox(tmp_path, activemq):
    queues = {kind: f"/queue/Reduction{kind.capitalize()}{os.getpid()}t" for kind in KINDS}  # this test's own
    root = tmp_path / "Q"
    root.mkdir()
    q.Queue(str(root)).make()
    station = Station(tmp_path / "s")
    station.handler("h", HANDLER)
    station.table(f"isis {root}/incoming *.json {station.passdir}/h 0 -1 0 claim=yes retries=1 retry=3000")
    consumer = activemq.consumer(*queues.values())
    try:
        # No broker where the sink points: the run ends, its replies wait.
        (station.passdir / "waitd.conf").write_text(conf(free_port(), queues))
        station.start()
        messages = {name: message(i + 1, name) for i, name in enumerate(("ok", "skip", "again", "bad"))}
        enqueue(root, "ok.json", messages["ok"])
        wait_for(lambda: any(e.path.endswith("ok.json") for e in station.ends()), 10, "the end of ok.json")
        assert station.proc is not None
        station.proc.send_signal(signal.SIGKILL)
        station.proc.wait(10)
        (station.passdir / "waitd.conf").write_text(conf(activemq.port, queues))
        station.start()
        for name in ("skip", "again", "bad"):
            enqueue(root, f"{name}.json", messages[name])
        # started: ok, skip, again twice, bad; then one end each, again's two.
        got = consumer.wait(10)
        by: dict[tuple[str, str], list[dict]] = {}
        for destination, body in got:
            kind = next(k for k, v in queues.items() if v == destination)
            by.setdefault((body["description"].split()[1], kind), []).append(body)
        for (name, _), bodies in by.items():
            for body in bodies:
                assert {k: body[k] for k in messages[name]} == messages[name]  # the message, nested values too
        ok = by[("ok", "complete")][0]
        assert ok["output_dirs"] == ["/ceph/out"] and ok["message"] is None and ok["retry_in"] is None
        assert "reducing " in ok["reduction_log"] and "record 1: started " in ok["admin_log"]
        skip = by[("skip", "skipped")][0]
        assert skip["message"] == "not in event mode" and "skip" not in skip
        first = by[("again", "error")][0]
        assert 0 <= first["retry_in"] <= 0.2 and first["message"] == "exit status 75"
        assert len(by[("again", "complete")]) == 1 and len(by[("again", "started")]) == 2
        bad = by[("bad", "error")][0]
        assert (
            bad["message"] == "exit status 1" and "Traceback: boom" in bad["reduction_log"] and bad["retry_in"] is None
        )
        assert "response " in bad["admin_log"] and ": not JSON: Expecting value" in bad["admin_log"]
        ids = [h["waitd-event-id"] for h in consumer.headers]
        assert len(set(ids)) == len(ids) == 10
        assert station.stop() == 0
    finally:
        consumer.close()
        if station.proc is not None and station.proc.poll() is None:
            station.proc.kill()
