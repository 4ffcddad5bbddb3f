# SPDX-License-Identifier: MIT
"""Sources, the parts below the processes: waitd.conf's [source NAME]
(config/sourceconf.py), the spooler's exactly-once (sources/spooler.py)
at each point a kill -9 can leave it, and under real kills; posttroll's
messages as files (sources/posttroll.py); fields=json
(spool/jsonfields.py, config/options.py)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from waitd.config import conf, options
from waitd.sources import posttroll
from waitd.sources.spooler import Message, Spooler
from waitd.spool import jsonfields

NAME = "{instrument}{run_number:05d}_v{run_version}.json"


def spooler(tmp_path: Path, name_format: str | None = NAME) -> Spooler:
    q = tmp_path / "q"
    q.mkdir(exist_ok=True)
    s = Spooler("isis", str(tmp_path / "isis.names"), str(q), name_format, 4096)
    s.open()
    return s


def msg(run: int, mid: str | None = None, **extra: object) -> Message:
    body = {"instrument": "WISH", "run_number": run, "run_version": 0, "rb_number": 7, **extra}
    return Message(mid or f"ID:{run}", json.dumps(body).encode())


def test_a_source_section_parses_and_every_problem_names_its_line():
    good = (
        "[source isis]\ntype = stomp\ndestinations = /queue/ReductionPending, /queue/Other\n"
        f"cancel = /queue/ReductionCancel\nqueue = /srv/q\nname = {NAME}\n"
        "[source pt]\ntype = posttroll\ntopics = /segment/SEVIRI\nnameservers = ns1\nservices = r1\nqueue = /srv/h/\n"
    )
    parsed, errors = conf.parse(good, "w.conf")
    assert errors == []
    isis, pt = parsed.sources
    assert isis.settings["destinations"] == ["/queue/ReductionPending", "/queue/Other"]
    assert isis.settings["port"] == 61613 and isis.max_size == 1 << 20 and isis.name_format == NAME
    assert pt.queue == "/srv/h" and pt.settings["nameservers"] == ["ns1"] and pt.name_format is None
    bad = (
        "[source a]\ntype = stomp\nqueue = rel/q\nname = {x:99999d}\ncolour = red\n"
        "[source b]\ntype = posttroll\ntopics = /t\naddresses = tcp://h:1\nnameservers = ns\nqueue = /q\n"
        "[source c]\ntype = stomp\ndestinations = /queue/x\ncancel = /queue/x\nqueue = /q\n"
        "[source d]\ntype = kafka\n"
    )
    _, errors = conf.parse(bad, "w.conf")
    said = [(e.line, str(e).split(":", 2)[-1].strip()) for e in errors]
    assert (1, "[source a]: no destinations = (it is required)") in said
    assert any(line == 3 and "queue = rel/q: expected the absolute path" in text for line, text in said)
    assert any(line == 4 and text.startswith("[source a]: name = {x:99999d}") for line, text in said)
    assert any(line == 5 and "unknown key 'colour'" in text for line, text in said)
    assert (6, "[source b]: give one of addresses = (connect to publishers) and nameservers = (find them)") in said
    assert any(line == 12 and "cancel = is one of destinations =" in text for line, text in said)
    assert (18, "[source d]: type = kafka: unknown (known: stomp, posttroll)") in said


def test_messages_go_in_once_and_bad_ones_to_errors_with_the_reason(tmp_path):
    s = spooler(tmp_path)
    q = tmp_path / "q"
    placed = s.put([msg(1), msg(1, "ID:again"), Message("ID:x", b"{nope"), Message("ID/../y", b"[1]"), msg(2)])
    assert [(p.name, p.where) for p in placed] == [
        ("WISH00001_v0.json", "incoming"),
        ("WISH00001_v0.json", "duplicate"),
        ("ID:x", "errors"),
        ("ID_.._y", "errors"),
        ("WISH00002_v0.json", "incoming"),
    ]
    assert sorted(os.listdir(q / "incoming")) == ["WISH00001_v0.json", "WISH00002_v0.json"]
    assert json.loads((q / "incoming" / "WISH00001_v0.json").read_text())["run_number"] == 1
    bad = json.loads((q / "errors" / "ID:x").read_text())
    assert bad["error"].startswith("not JSON") and bad["body"] == "{nope" and bad["message_id"] == "ID:x"
    assert json.loads((q / "errors" / "ID_.._y").read_text())["error"] == "not a JSON object"
    # Given again (a redelivery): known, nothing written.
    assert [p.where for p in s.put([Message("ID:x", b"{nope"), msg(2)])] == ["duplicate", "duplicate"]
    assert len(os.listdir(q / "errors")) == 2 and os.listdir(q / "tmp") == []
    s.close()
    s = spooler(tmp_path)  # the ledger survives the process
    assert s.put([msg(1)])[0].where == "duplicate"


def test_a_cancel_before_the_message_sends_it_to_errors(tmp_path):
    s = spooler(tmp_path)
    s.remember_cancel("WISH00003_v0.json")
    (placed,) = s.put([msg(3)])
    assert placed.where == "cancelled" and placed.why == "cancelled before it came"
    assert json.loads((tmp_path / "q" / "errors" / "WISH00003_v0.json").read_text())["run_number"] == 3
    s.close()
    assert spooler(tmp_path).put([msg(3)])[0].where == "duplicate"


@pytest.mark.parametrize(
    "left", ["tmp only", "tmp and ledger", "ledger and incoming", "claimed elsewhere", "failed before the ledger"]
)
def test_each_point_a_kill_can_leave(tmp_path, left):
    """What a process killed at each step leaves, and what the next one does
    with it when the broker gives the message again."""
    q = tmp_path / "q"
    s = spooler(tmp_path)
    s.close()
    name = "WISH00001_v0.json"
    tmp = q / "tmp" / f"source.isis.{name}"
    if left in ("tmp only", "tmp and ledger"):
        tmp.write_bytes(b'{"half": ')  # "tmp only": it may be torn
    if left in ("tmp and ledger", "ledger and incoming"):
        (tmp_path / "isis.names").write_text(f"+ {name}\n")
    if left == "tmp and ledger":
        tmp.write_text(json.dumps({"run_number": 1}))  # fsync'd before the ledger line
    if left == "ledger and incoming":
        (q / "incoming" / name).write_text("{}")
    if left == "claimed elsewhere":
        (q / "pending" / "other").mkdir(parents=True)
        (q / "pending" / "other" / name).write_text("{}")
    if left == "failed before the ledger":  # in errors, its name older than the ledger's memory
        (q / "errors" / name).write_text("{}")
    s = spooler(tmp_path)  # the next process
    assert os.listdir(q / "tmp") == []
    (placed,) = s.put([msg(1)])
    expected = {"tmp only": "incoming"}.get(left, "duplicate")
    assert placed.where == expected
    incoming = os.listdir(q / "incoming")
    assert incoming == ([] if left in ("claimed elsewhere", "failed before the ledger") else [name])
    if left == "tmp and ledger":
        assert json.loads((q / "incoming" / name).read_text()) == {"run_number": 1}


CHILD = """
import json, sys
from waitd.sources.spooler import Message, Spooler
queue, ledger, acks, start, n, size = sys.argv[1:]
s = Spooler("isis", ledger, queue, None, 1 << 20)
s.open()
with open(acks, "a") as out:
    for i in range(int(start), int(n), int(size)):
        batch = [Message(f"m{j:04d}", json.dumps({"i": j}).encode()) for j in range(i, min(i + int(size), int(n)))]
        s.put(batch)
        out.write(f"{batch[-1].id}\\n")
        out.flush()
"""


def test_real_kills_at_random_moments_leave_each_message_once(tmp_path):
    """A process putting messages in batches (of 1, 3 or 6) is killed with SIGKILL
    at random moments; each next one starts from the first batch not
    acknowledged (as a broker gives again what was not acknowledged).  At
    the end every message is in incoming exactly once, whole."""
    rng = random.Random(os.environ.get("WAITD_SEED") or time.time_ns())
    q = tmp_path / "q"
    q.mkdir()
    acks, n, kills = tmp_path / "acks", 300, 0
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def acked() -> list[str]:
        return acks.read_text().split() if acks.exists() else []

    while True:
        done = acked()
        start = int(done[-1][1:]) + 1 if done else 0
        size = rng.choice((1, 3, 6)) if kills < 8 else 6  # fsync'd one by one, or with one syncfs (SYNCFS_AT)
        args = [str(q), str(tmp_path / "isis.names"), str(acks), str(start), str(n), str(size)]
        proc = subprocess.Popen([sys.executable, "-c", CHILD, *args], env=env)
        if kills < 8:
            # Once it puts messages (an ack more), a moment later: within a put.
            # Looked for each millisecond (not wait_for's growing pauses, up to
            # 50 ms: a quick disk then let the child put all 300 and exit
            # before its kill, and the test had too few kills).
            deadline = time.monotonic() + 30
            while len(acked()) <= len(done) and proc.poll() is None:
                assert time.monotonic() < deadline, "no put within 30 s"
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.005))
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                kills += 1
                continue
        assert proc.wait(timeout=60) == 0
        break
    names = sorted(os.listdir(q / "incoming"))
    assert names == [f"m{j:04d}" for j in range(n)]
    assert all(json.loads((q / "incoming" / f"m{j:04d}").read_text()) == {"i": j} for j in range(n))
    assert os.listdir(q / "tmp") == [] and kills >= 3


def test_posttroll_datasets_and_collections_are_one_message_per_member():
    start = {"platform_name": "Meteosat-11", "sensor": ["seviri"]}
    file = posttroll.messages("file", {**start, "uid": "a", "uri": "/in/a"})
    assert [(m.id, m.body["uri"]) for m in file] == [("a", "/in/a")]
    dataset = posttroll.messages("dataset", {**start, "dataset": [{"uid": "b", "uri": "/b"}, {"uri": "/x/c"}]})
    assert [m.id for m in dataset] == ["b", "c"]
    assert dataset[0].body == {**start, "uid": "b", "uri": "/b"}
    coll = {**start, "collection": [{"dataset": [{"uid": "d", "uri": "/d"}], "area": "eu"}]}
    assert [(m.id, m.body["area"]) for m in posttroll.messages("collection", coll)] == [("d", "eu")]
    assert posttroll.messages("beat", {}) == [] and posttroll.messages("file", "text") == []


def test_fields_json_reads_a_body_and_lets_key_name_its_fields(tmp_path):
    assert jsonfields.fields_of(b'{"rb_number": 7, "args": {"a": 1}, "bad key": 1, "ok": true}') == {
        "rb_number": 7,
        "args": '{"a":1}',
        "ok": True,
    }
    assert jsonfields.fields_of(b"[1]") is None and jsonfields.fields_of(b"{") is None
    path = tmp_path / "f.json"
    path.write_text('{"rb_number": 7}')
    assert jsonfields.read((str(tmp_path / "gone"), str(path))) == {"rb_number": 7}
    _, problems = options.parse(["key={rb_number}"])
    assert problems and "no field {rb_number}" in problems[0]
    opts, problems = options.parse(["key={rb_number}", "fields=json"])
    assert problems == [] and opts.fields_from == "json"
    assert options.parse(["fields=yaml"])[1] == [
        "option fields=yaml: expected name (the fields of pattern=) or json (a JSON file's too)"
    ]


def test_the_ledger_keeps_its_last_names(tmp_path, monkeypatch):
    from waitd.sources import spooler as module

    monkeypatch.setattr(module, "KEEP", 5)
    s = spooler(tmp_path, None)
    s.put([Message(f"m{i}", b"{}") for i in range(11)])  # 11 > 2 * 5: the last 5 kept
    assert (tmp_path / "isis.names").read_text().split("\n")[:-1] == [f"+ m{i}" for i in range(6, 11)]
    assert s.put([Message("m10", b"{}")])[0].where == "duplicate"
    s.put([Message("m11", b"{}")])
    s.close()
    assert spooler(tmp_path, None).taken == {f"m{i}" for i in range(6, 12)}


def test_check_warns_of_a_queue_no_record_takes_from_and_one_that_cannot_be_made(tmp_path, capsys):
    from waitd.cli import main as cli

    passdir = tmp_path / "pass"
    passdir.mkdir()
    (tmp_path / "q").mkdir()
    (passdir / "incoming").write_text(f"x {tmp_path}/q/incoming * /bin/true 0 -1 0 claim=yes\n")
    (passdir / "waitd.conf").write_text(
        f"[source a]\ntype = stomp\ndestinations = /queue/a\nqueue = {tmp_path}/q\n"
        f"[source b]\ntype = stomp\ndestinations = /queue/b\nqueue = {tmp_path}/none\n"
        f"[source c]\ntype = posttroll\ntopics = /t\naddresses = tcp://h:1\nqueue = {tmp_path}\n"
    )
    assert cli.main(["--passdir", str(passdir), "--check", "-v"]) == 0
    out, err = capsys.readouterr()
    conf = passdir / "waitd.conf"
    assert f"{conf}:5: [source b]: warning: queue = {tmp_path}/none: No such file or directory" in err
    assert f"{conf}:9: [source c]: warning: no record takes files from {tmp_path}/incoming" in err
    assert "[source a]" not in err
    assert f"[source c] ({conf}:9): type=posttroll queue={tmp_path} name=(the message id)" in out
    assert "0 sink(s), 3 source(s), valid" in out


def test_a_name_that_is_no_file_name_goes_to_errors(tmp_path):
    s = spooler(tmp_path, "{instrument}.json")
    bodies = [b'{"instrument": "a/b"}', b'{"instrument": "x\\ny"}', b'{"instrument": "\\ud800"}', b'{"instrument": ""}']
    placed = s.put([Message(f"ID:{i}", body) for i, body in enumerate(bodies)])
    assert [p.where for p in placed] == ["errors"] * 4
    assert all("which is no file name" in (p.why or "") for p in placed[:2])
    assert os.listdir(tmp_path / "q" / "incoming") == []
    assert (tmp_path / "isis.names").read_text().splitlines() == [f"+ ID:{i}" for i in range(4)]


def test_a_stomp_login_from_a_passcode_file_only_its_owner_reads(tmp_path):
    from waitd.sources import stomp

    base = "[source a]\ntype = stomp\ndestinations = /queue/a\nqueue = /q\n"
    secret = tmp_path / "secret"
    parsed, errors = conf.parse(base + f"user = waitd\npasscode-file = {secret}\n", "w.conf")
    assert errors == []
    _, errors = conf.parse(base + f"user = u\npassword = p\npasscode-file = {secret}\n", "w.conf")
    assert [str(e) for e in errors] == ["w.conf:1: [source a]: give password = or passcode-file =, not both"]
    _, errors = conf.parse(base + "password = p\n", "w.conf")
    assert [str(e) for e in errors] == ["w.conf:1: [source a]: give user = with password = or passcode-file ="]
    secret.write_text("s3cret\nignored\n")
    secret.chmod(0o600)
    assert stomp.passcode(dict(parsed.sources[0].settings)) == "s3cret"
    secret.chmod(0o640)
    with pytest.raises(PermissionError, match="readable by others than its owner"):
        stomp.passcode(dict(parsed.sources[0].settings))
