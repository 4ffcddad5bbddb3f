# SPDX-License-Identifier: MIT
"""The pure parts of run=celery: a task's stored state as an outcome, the
history's task= key, how a lost run counts, the run= option; and what
waitd says where Celery is not installed."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys

from conftest import ROOT

from waitd.config import options
from waitd.decide.outcome import Job, Outcome, Verdict, Why, end_events, judge
from waitd.formats.history_line import Event, Status, format_event, parse_line
from waitd.run.executors.celery_app import result_of, shown_url
from waitd.spool.directory import FileFact


def success(**fields) -> dict:
    return {"status": "SUCCESS", "result": {"host": "h1", "pid": 7, "took": 0.5, **fields}}


def test_a_result_becomes_an_outcome_with_its_output_and_where_it_ran():
    out = base64.b64encode(b"hello\n").decode()
    r = result_of(success(exit=3, output=out, size=6), set())
    assert (r.outcome, r.output, r.note) == (
        Outcome(Status.KNOWN, exit=3),
        b"hello\n",
        "waitd: ran on host=h1 pid=7 took=0.5",
    )
    r = result_of(success(exit=0, output=out, size=5000), set())
    assert r.note.startswith("waitd: output cut to its first 6 bytes of 5000\n")
    assert result_of(success(signal="SIGSEGV"), set()).outcome == Outcome(Status.UNKNOWN, signal="SIGSEGV")
    assert result_of(success(lost="its-worker-died"), set()).outcome.lost
    assert result_of(success(), set()).outcome.lost  # no exit status at all
    said = base64.b64encode(b'{"skip": "why"}').decode()
    assert result_of(success(exit=0, response=said), set()).outcome.response == b'{"skip": "why"}'


def test_revoked_is_a_kill_only_when_waitd_terminated_it():
    terminated = {"status": "REVOKED", "result": {"exc_type": "TaskRevokedError", "exc_message": ["terminated"]}}
    assert result_of(terminated, {signal.SIGTERM}).outcome == Outcome(Status.UNKNOWN, signal="SIGTERM")
    revoked = {"status": "REVOKED", "result": {"exc_type": "TaskRevokedError", "exc_message": ["revoked"]}}
    assert result_of(revoked, {signal.SIGTERM}).outcome.lost  # never ran: revoked before a worker took it
    assert result_of(terminated, set()).outcome.lost
    failure = {"status": "FAILURE", "result": {"exc_type": "WorkerLostError", "exc_message": ["signal 9"]}}
    r = result_of(failure, set())
    assert r.outcome.lost and r.note == "waitd: lost: WorkerLostError signal 9"


def test_a_lost_run_is_a_temporary_failure_and_consumes_its_file():
    assert judge(Outcome(Status.UNKNOWN, lost=True), None) is Verdict.TEMPORARY
    assert judge(Outcome(Status.UNKNOWN, lost=True), Why.CANCEL) is Verdict.FINAL
    job = Job(("d", "t", "p"), "p", (FileFact(10**9, "a", 0, 1, 2),), ("d/a",))
    opts = options.Options(retries=1, timeout_s=5, run="celery")
    (end,), verdict = end_events(job, Outcome(Status.UNKNOWN, lost=True), None, opts, None, 5.0, 100.0, task="t-1")
    assert (verdict, end.error, end.retry_at, end.task, end.consumed) == (Verdict.TEMPORARY, "lost", 160.0, "t-1", True)
    assert parse_line(format_event(end).rstrip("\n")) == end
    assert " task=t-1 " in format_event(end)
    not_run = Event("d/a", "p", 1, Status.UNKNOWN, error="cannot execute")
    assert not not_run.consumed


def test_run_option():
    opts, problems = options.parse(["run=celery", "timeout=30"])
    assert (opts.run, problems) == ("celery", [])
    assert options.parse(["run=celery"])[1] == [
        "run=celery needs timeout=: a run whose worker dies is known lost only when its timeout passes"
    ]
    assert options.parse(["run=far", "timeout=1"])[1] == ["option run=far: expected local or celery"]
    assert options.Options().run == "local"


def test_a_broker_url_is_shown_without_its_password():
    assert shown_url("redis://:secret@host:6379/0") == "redis://:***@host:6379/0"
    assert shown_url("redis://user:secret@host/0") == "redis://user:***@host/0"
    assert shown_url("redis://host:6379/0") == "redis://host:6379/0"


def test_without_celery_the_worker_and_the_check_say_how_to_install_it_where_waitd_runs(tmp_path):
    # This Python as one without Celery: the import system finds none.
    hidden = "import sys; sys.modules['celery'] = None; from waitd.cli.main import main; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    pip = f"{sys.prefix}/bin/pip install 'celery[redis]'"  # after make install: LIBDIR/bin/pip
    worker = subprocess.run(
        [sys.executable, "-c", hidden, "worker", "--broker", "redis://127.0.0.1:1/0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 2
    assert worker.stderr == (
        f"waitd worker: Celery is not installed; install it with {pip} (or, with waitd itself: "
        "pip install 'waitd[celery]')\n"
    )
    (tmp_path / "incoming").write_text(f"x {tmp_path} *.g8 /bin/true 0 -1 0 run=celery timeout=5\n")
    check = subprocess.run(
        [sys.executable, "-c", hidden, "--passdir", str(tmp_path), "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 2
    assert f"{tmp_path}/incoming:1: run=celery needs Celery, which is not installed; install it with {pip}" in (
        check.stderr
    )
