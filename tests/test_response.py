# SPDX-License-Identifier: MIT
"""Responses (WAITD_RESPONSE): the document, its effect on an outcome, and
the daemon keeping it beside the run's log and in the `ended` event.

The pure parts (the document's rules, `retry_in` and `skip` in
`end_events`) are unit tests; one daemon test runs a handler that leaves
each kind of response, good and bad.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from conftest import deliver, read_jsonl, wait_for
from peers.activemq import free_port

from waitd.config.options import MAX_RETRY_S, Options
from waitd.decide.facts import FileFact
from waitd.decide.outcome import Job, Outcome, Verdict, Why, end_events
from waitd.formats import response
from waitd.formats.history_line import Event, Status, format_event, parse_line

# -- the document -----------------------------------------------------------------


def test_a_response_is_one_json_object_with_retry_in_and_skip_of_their_kinds():
    assert response.parse(b"") is None and response.parse(b" \n") is None
    got = response.parse(b'{"retry_in": 30, "output": ["/x"]}')
    assert got is not None and got.retry_in == 30.0 and got.skip is None and got.document["output"] == ["/x"]
    skip = response.parse('{"skip": "no data: é"}'.encode())
    assert skip is not None and skip.skip == "no data: é"
    for data, said in (
        (b"x" * (response.MOST + 1), "more than 65536 bytes"),
        (b"{oops", "not JSON: Expecting property name"),
        (b"[1, 2]", "not a JSON object but list"),
        (b"\xff{}", "not UTF-8"),
        (b'{"retry_in": "soon"}', "retry_in is 'soon', not a number"),
        (b'{"retry_in": true}', "retry_in is True"),
        (b'{"skip": 1}', "skip is 1, not a string"),
        (b"[" * 60_000, "not JSON"),
    ):
        with pytest.raises(response.BadResponse, match=said):
            response.parse(data)


def test_the_tail_of_a_log_starts_at_a_line():
    assert response.tail(b"short\n") == "short\n"
    text = b"".join(b"line %d\n" % i for i in range(2000))
    tail = response.tail(text, 100)
    assert tail.startswith("line ") and tail.endswith("line 1999\n") and len(tail) <= 100


# -- what a response does to an outcome ------------------------------------------------


def _job() -> Job:
    fact = FileFact(5_000_000_000, "f", 5_000_000_000, 1, 2)
    return Job(("/d", "*", "h"), "h", (fact,), ("/d/f",))


@pytest.mark.parametrize(
    ("retry_in", "delay"),
    [(None, 60.0), (5, 5.0), (0, 0.0), (-3, 0.0), (10**9, float(MAX_RETRY_S))],
)
def test_retry_in_on_exit_75_sets_the_retry_delay_within_bounds(retry_in, delay):
    said = response.Response({"retry_in": retry_in} if retry_in is not None else {})
    ends, verdict = end_events(_job(), Outcome(Status.KNOWN, exit=75), None, Options(retries=2), 1, 1.0, 1000.0,
                               response=said)  # fmt: skip
    assert verdict is Verdict.TEMPORARY and ends[0].retry_at == 1000.0 + delay


def test_retry_in_does_not_make_a_retry_where_none_is_left_nor_count_on_another_exit():
    said = response.Response({"retry_in": 5})
    ends, verdict = end_events(_job(), Outcome(Status.KNOWN, exit=75), None, Options(retries=0), 1, 1.0, 0.0,
                               response=said)  # fmt: skip
    assert verdict is Verdict.FINAL and ends[0].retry_at is None
    ends, verdict = end_events(_job(), Outcome(Status.KNOWN, exit=1), None, Options(retries=3), 1, 1.0, 0.0,
                               response=said)  # fmt: skip
    assert verdict is Verdict.FINAL and ends[0].retry_at is None


def test_skip_on_exit_0_is_a_skipped_success_and_its_line_round_trips():
    said = response.Response({"skip": "nothing to reduce"})
    ends, verdict = end_events(_job(), Outcome(Status.KNOWN, exit=0), None, Options(), 1, 1.0, 0.0, response=said)
    assert verdict is Verdict.SUCCESS and ends[0].outcome == "skipped" and ends[0].succeeded
    line = format_event(ends[0])
    assert " outcome=skipped " in line and parse_line(line.rstrip("\n")) == ends[0]
    ends, _ = end_events(_job(), Outcome(Status.KNOWN, exit=2), None, Options(), 1, 1.0, 0.0, response=said)
    assert ends[0].outcome is None  # a failure is a failure, whatever it says


# -- the daemon ------------------------------------------------------------------------

HANDLER = """\
case "$(basename "$1")" in
  ok*) echo "reduced $1"; printf '{"output": ["/out/%s"]}' "$(basename "$1")" > "$WAITD_RESPONSE";;
  skip*) printf '{"skip": "no data worth it"}' > "$WAITD_RESPONSE";;
  again*) if [ "$WAITD_ATTEMPT" = 1 ]; then printf '{"retry_in": 0.3}' > "$WAITD_RESPONSE"; exit 75; fi;;
  big*) head -c 70000 /dev/zero | tr '\\0' ' ' > "$WAITD_RESPONSE";;
  junk*) echo 'not json' > "$WAITD_RESPONSE"; exit 3;;
esac
"""


def test_responses_kept_beside_the_log_carried_in_ended_and_acted_on(station):
    (station.passdir / "waitd.conf").write_text("[sink log]\ntype = jsonl\npath = events.jsonl\nretry = 0.05\n")
    station.handler("h", HANDLER)
    station.table(f"x {station.incoming} *.d {station.passdir}/h 0 -1 0 retries=1 retry=3000")
    port = free_port()
    station.start("--metrics", f"127.0.0.1:{port}")
    names = ("ok.d", "skip.d", "again.d", "big.d", "junk.d")
    for name in names:
        deliver(station, name)

    def ended() -> dict[str, list[dict]]:
        by: dict[str, list[dict]] = {}
        for e in read_jsonl(station.passdir / "events.jsonl"):
            if e["type"] == "ended":
                by.setdefault(e["path"].rsplit("/", 1)[1], []).append(e)
        return by

    by = wait_for(lambda: sum(map(len, ended().values())) == 6 and ended(), 20, "six ends (again.d twice)")
    ok = by["ok.d"][0]
    assert ok["outcome"] == "ok" and ok["response"] == {"output": ["/out/ok.d"]}
    assert "log" not in ok and "admin_log" not in ok and "body" not in ok  # for a format = isis sink only
    skip = by["skip.d"][0]
    assert skip["outcome"] == "skipped" and skip["exit"] == 0 and skip["response"]["skip"] == "no data worth it"
    first, second = by["again.d"]
    assert first["outcome"] == "retrying" and first["retry_at"] - first["time"] < 5  # not retry=3000
    assert second["outcome"] == "ok" and second["attempt"] == 2 and "response" not in second
    # A response waitd cannot take: logged, the outcome its exit's.
    assert by["big.d"][0]["outcome"] == "ok" and "response" not in by["big.d"][0]
    assert by["junk.d"][0]["outcome"] == "failed" and by["junk.d"][0]["exit"] == 3
    log = station.log()
    assert ".response: more than 65536 bytes; ignored (the outcome is its exit's)" in log
    assert ".response: not JSON: Expecting value at line 1 column 1; ignored" in log
    lines = {e.path.rsplit("/", 1)[1]: e for e in station.ends()}
    assert lines["skip.d"].outcome == "skipped" and lines["skip.d"].status == Status.KNOWN
    assert "skipped: no data worth it" in log
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        metrics = reply.read().decode()
    assert 'waitd_runs_total{outcome="skipped",record="1",telem="x"} 1.0' in metrics
    kept = sorted(p.name for p in (station.passdir / "logfiles").glob("*.response"))
    assert len(kept) == 5  # one a run that left one: the second run of again.d left none
    documents = [json.loads(p.read_bytes()) for p in (station.passdir / "logfiles").glob("*.response")
                 if p.stat().st_size < 1000 and p.read_bytes().startswith(b"{")]  # fmt: skip
    assert {"output": ["/out/ok.d"]} in documents
    assert station.stop() == 0


def test_end_events_fill_each_field_of_each_file_of_a_job():
    """Made positionally: each value lands in its own field (a keyword-made
    Event compares equal), a group's files each with their path and version."""
    facts = (FileFact(5_000_000_000, "a", 0, 1, 2), FileFact(7_000_000_000, "b", 0, 3, 4))
    job = Job(("/d", "*", "h"), "h", facts, ("/d/a", "/d/b"), attempt=2, group="g")
    opts = Options(retries=3)
    ends, verdict = end_events(job, Outcome(Status.UNKNOWN, signal="SIGKILL"), Why.TIMEOUT, opts, 9, 1.5, 100.0)
    assert verdict is Verdict.TEMPORARY
    for end, fact, path in zip(ends, facts, job.paths, strict=True):
        assert end == Event(
            path, "h", fact.mtime_ns // 10**9, Status.UNKNOWN, pid=9, signal="SIGKILL", error="timeout", at=100.0,
            took=1.5, attempt=2, retry_at=100.0 + opts.retry_delay_s(2), group="g", version=fact.version,
        )  # fmt: skip
    (one,), _ = end_events(_job(), Outcome(Status.KNOWN, exit=0), None, opts, None, 0.5, 9.0, task="t")
    assert one == Event("/d/f", "h", 5, Status.KNOWN, exit=0, at=9.0, took=0.5, task="t", version=_job().fact.version)
