# SPDX-License-Identifier: MIT
"""The status document: its JSON written and read back in one module."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from waitd.config import table
from waitd.daemon import control
from waitd.daemon.events import summary
from waitd.formats.status import (
    CeleryReport,
    Counts,
    Held,
    Incomplete,
    Last,
    OpenGroup,
    QueueReport,
    RecordReport,
    Retrying,
    RunReport,
    SinkReport,
    SourceReport,
    Status,
    TableReport,
    Waiting,
    from_json,
    to_json,
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "doc" / "status.schema.json").read_text())
NOW = 1_795_000_000.0


def _options() -> dict[str, object]:
    """A real record's options, as the status shows them."""
    records, _ = table.parse("gvar /in *.g8 /bin/h 0 -1 0 jobs=2\n", "incoming", "/p", {})
    return {**records[0].options.as_dict(), "topic": records[0].topic}


def _record(**changes: object) -> RecordReport:
    fields: dict[str, object] = dict(
        number=1,
        telem="gvar",
        directory="/in",
        template="*.g8",
        process="/bin/h",
        options=_options(),
        problem=None,
        backoff_until=None,
        running=[RunReport("/in/a.g8", 12, 2, NOW - 5, 5.0, "running", False, "/p/logfiles/incoming.1.A", None)],
        waiting=3,
        oldest_mtime=NOW - 90,
        held=[Held("/in/x.g8", "its group gathers", NOW + 30)],
        held_count=4,
        open_groups=[OpenGroup("g1", NOW + 60, ["1:1"], ["x.g8"], 1, ["1:2"], 1)],
        open_groups_count=2,
        retrying=[Retrying("/in/t.g8", NOW + 60)],
        failed=["/in/bad.g8"],
        failed_count=1,
        unremovable=[],
        unremovable_count=0,
        incomplete=[Incomplete("g0", ["1:3"])],
        queue=QueueReport("/q", 1, {"here": 2}, 0, False),
        last=Last("/in/z.g8", "exit status 0"),
        counters=Counts(5, 1, 1, 2),
        waiting_files=[Waiting("b.g8", NOW + 5)],
    )
    fields.update(changes)
    return RecordReport(**fields)  # type: ignore[arg-type]


def _status(**changes: object) -> Status:
    fields: dict[str, object] = dict(
        schema=1,
        pid=4242,
        mode="active",
        passdir="/p",
        started_at=NOW - 3600,
        written_at=NOW,
        jobs=None,
        stop_timeout_s=30.0,
        kill_grace_s=5.0,
        unwritten_events=0,
        table=TableReport(0, [], 2, 1),
        records=[_record(), _record(number=2, problem="incoming-dir /x does not exist")],
        sinks=[SinkReport("log", "jsonl", None, 7, NOW - 10, "OSError: full", 1)],
        celery=CeleryReport("redis://h:6379/0", "waitd", True, None, None, 3),
    )
    fields.update(changes)
    return Status(**fields)  # type: ignore[arg-type]


def test_the_json_reads_back_to_the_same_document_and_fits_the_schema() -> None:
    doc = _status()
    obj = to_json(doc)
    jsonschema.validate(obj, SCHEMA)
    assert from_json(json.loads(json.dumps(obj))) == doc
    assert obj == dataclasses.asdict(doc)  # what to_json makes, without asdict's deep copies


def test_members_an_older_waitd_left_out_take_their_defaults_and_unknown_ones_are_ignored() -> None:
    obj = to_json(_status())
    for name in ("other_runs", "sinks", "celery"):
        del obj[name]
    obj["from_the_future"] = {"x": 1}
    doc = from_json(obj)
    assert doc.sinks == [] and doc.celery is None and doc.other_runs == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda o: o.pop("mode"), "status: no mode"),
        (lambda o: o.update(pid="12"), "status.pid: not a int"),
        (lambda o: o["records"][0].update(waiting=None), "status.records[0].waiting"),
        (lambda o: o["records"][0]["counters"].pop("ok"), "status.records[0].counters: no ok"),
        (lambda o: o.update(records={}), "status.records: not a list"),
    ],
)
def test_a_document_that_is_not_one_is_a_value_error_naming_the_member(change, named) -> None:
    obj = to_json(_status())
    change(obj)
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        from_json(obj)
    assert from_json(to_json(_status())) is not None


def test_the_text_status_reads_the_typed_document() -> None:
    text = control.format_status(_status(), 4242, NOW)
    assert text.startswith("waitd: running, pid 4242, active, up 1 h 0 min\npassdir: /p\n")
    assert "  running: /in/a.g8 (pid 12, for 5 s, attempt 2)\n" in text
    assert "  held: 4 file(s): /in/x.g8 (its group gathers, for 30 s more) and 3 more\n" in text
    assert "  queue /q: incoming: 1, pending: 2 by here, errors: 0\n" in text
    assert "  inactive: incoming-dir /x does not exist\n" in text
    assert "sink log (jsonl): down since 10 s ago: OSError: full; 7 events behind\n" in text
    assert text.endswith("celery broker redis://h:6379/0 (queue waitd): reachable; 3 run(s) in flight\n")
    paused = replace(_status().records[0].running[0], state="paused")
    doc = _status()
    doc = replace(doc, records=[replace(doc.records[0], running=[paused]), *doc.records[1:]])
    assert "  running: /in/a.g8 (pid 12, for 5 s, attempt 2, paused (waitd -s resume))\n" in control.format_status(
        doc, 4242, NOW
    )
    assert control.format_status(_status(), 1, NOW) == "waitd: running, pid 1, starting (no status written yet)\n"
    assert control.format_status(None, None, NOW) == "waitd: not running\n"


def test_the_status_file_is_read_back_typed_and_a_bad_one_is_none(tmp_path: Path) -> None:
    control.write_status(str(tmp_path), to_json(_status()))
    assert control.read_status(str(tmp_path)) == _status()
    (tmp_path / "waitd.status").write_text('{"pid": "nonsense"}')
    assert control.read_status(str(tmp_path)) is None


def test_the_one_line_summary_for_systemd() -> None:
    assert summary(_status()) == "active: 1/2 records active, 2 running, 6 waiting, 2 failed; sink log down"


def test_sources_in_the_document_the_text_and_the_summary() -> None:
    sources = [
        SourceReport("isis", "stomp", "/q", 77, True, None, None, 812, 3, 1, 2, 0),
        SourceReport("hrit", "posttroll", "/h", 78, False, NOW - 90, "ConnectionError: refused", 0, 0, 0, 0, 2),
    ]
    doc = _status(sources=sources)
    obj = to_json(doc)
    jsonschema.validate(obj, SCHEMA)
    assert from_json(json.loads(json.dumps(obj))) == doc
    text = control.format_status(doc, 4242, NOW)
    assert "source isis (stomp) -> /q: connected (pid 77); 812 taken, 3 repeated, 1 to errors, 2 cancels\n" in text
    assert "source hrit (posttroll) -> /h: not connected since 1 min 30 s ago: ConnectionError: refused;" in text
    assert summary(doc).endswith("; sink log down; source hrit not connected")
