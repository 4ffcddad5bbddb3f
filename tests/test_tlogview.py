# SPDX-License-Identifier: MIT
"""tlogview: its parsing, and the command run on logs the real daemon wrote."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import run_here, wait_for

from waitd.cli import tlogview
from waitd.cli.tlogview.read import Entry, Filter, group, parse_run, parse_since, show_name
from waitd.cli.tlogview.show import format_table

HEADER = "waitd: start record=1 telem=gvar program=/x/h file=/in/f\\0401.g8 at=2026-11-23T09:04:43.100+0000"


def tlogview_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "waitd.cli.tlogview", *args]


def run_tlogview(station, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """tlogview ARGS, in this process (`conftest.run_here`: what the command
    prints and exits with, no Python started for it; its output a pipe, not
    a terminal).  The terminal and --follow tests start the real command."""
    return run_here(tlogview.main, "tlogview", list(args), env or station.env)


# -- parsing ----------------------------------------------------------------


def test_group_keeps_tracebacks_with_their_line():
    lines = [
        "  orphan line before any stamp",
        "2026-11-23 09:04:43.104 INFO record 1: started h on /in/a",
        "2026-11-23 09:04:44.000 ERROR waitd: unexpected error; carrying on",
        "Traceback (most recent call last):",
        "ValueError: boom",
        "2026-11-23 09:04:45.000 WARNING record 1: h on /in/a: exit status 3 after 1.000 s",
    ]
    entries = list(group(lines))
    assert [e.level for e in entries] == [None, "INFO", "ERROR", "WARNING"]
    assert entries[2].lines == tuple(lines[2:5])
    assert entries[1].stamp == "2026-11-23 09:04:43.104"


def test_a_stamp_with_an_unknown_level_is_a_continuation():
    (entry,) = group(["2026-11-23 09:04:43.104 INFO a", "2026-11-23 09:04:43.105 NOTALEVEL b"])
    assert len(entry.lines) == 2


def test_filter_level_grep_since_and_continuations():
    info = Entry(("2026-11-23 09:00:00.000 INFO started a.g8",), "2026-11-23 09:00:00.000", "INFO")
    error = Entry(("2026-11-23 10:00:00.000 ERROR record 1 inactive", "detail"), "2026-11-23 10:00:00.000", "ERROR")
    more = Entry(("  continued",), None, None)
    assert Filter().keep(info, False) and not Filter().active
    assert not Filter(level="warning").keep(info, True)
    assert Filter(level="warning").keep(error, False)
    assert Filter(grep="detail").keep(error, False), "the grep sees continuation lines"
    assert not Filter(grep="b.g8").keep(info, True)
    since = time.mktime((2026, 11, 23, 9, 30, 0, 0, 0, -1))
    assert not Filter(since=since).keep(info, True)
    assert Filter(since=since).keep(error, False)
    assert Filter(level="error").keep(more, True) and not Filter(level="error").keep(more, False)


def test_parse_since_ages_and_times():
    now = 1_000_000.0
    assert parse_since("90s", now) == now - 90
    assert parse_since("15m", now) == now - 900
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1.5d", now) == now - 1.5 * 86400
    assert parse_since("2026-11-23 08:00", now) == time.mktime((2026, 11, 23, 8, 0, 0, 0, 0, -1))
    assert parse_since("2026-11-23T08:00:00+00:00", now) == 1795420800.0
    for bad in ("yesterday", "15", "-3h", "2026-13-01"):
        with pytest.raises(ValueError, match="neither a time"):
            parse_since(bad, now)


def test_parse_run_outcomes():
    footer = "waitd: end record=1 exit=0 took=0.204 at=2026-11-23T09:04:43.304+0000"
    run = parse_run(1, "A", HEADER, f"{HEADER}\nhello\n{footer}\n")
    assert (run.file, run.took, run.outcome, run.ok) == ("/in/f\\0401.g8", 0.204, "exit 0", True)
    assert run.start == 1795424683.1
    glued = parse_run(1, "B", HEADER, "no newline at the end" + footer.replace("exit=0", "exit=3"))
    assert (glued.outcome, glued.ok) == ("exit 3", False)
    assert parse_run(1, "C", HEADER, "waitd: end record=1 signal=SIGTERM took=1.000 at=x\n").outcome == "signal SIGTERM"
    error = parse_run(1, "D", HEADER, "waitd: end record=1 error=No\\040such\\040file took=0.001 at=x\n")
    assert error.outcome == "error: No such file"
    running = parse_run(1, "E", HEADER, f"{HEADER}\nstill working\n")
    assert (running.outcome, running.took, running.ok) == ("running?", None, False)
    not_started = parse_run(1, "F", HEADER, f"{HEADER}\nwaitd: not started: disk full\n")
    assert not_started.outcome == "not started: disk full"
    headless = parse_run(2, "G", "", "")
    assert (headless.file, headless.start, headless.outcome) == (None, None, "running?")


def test_show_name_unescapes_only_printable_names():
    assert show_name("/in/a\\040b.g8") == "/in/a b.g8"
    assert show_name("/in/caf\\303\\251.g8") == "/in/café.g8"
    assert show_name("/in/new\\012line.g8") == "/in/new\\012line.g8"
    assert show_name("/in/\\377\\376.g8") == "/in/\\377\\376.g8", "not UTF-8: kept escaped"
    assert show_name("/in/bad\\9") == "/in/bad\\9"


def test_format_table_aligns_columns_and_colours_outcomes():
    runs = [
        parse_run(1, "A", HEADER, "waitd: end record=1 exit=0 took=0.204 at=x"),
        parse_run(12, "B", HEADER, "waitd: end record=12 signal=SIGKILL took=31.000 at=x"),
        parse_run(3, "C", "", ""),
    ]
    table = format_table(runs)
    assert [key for _, key in table] == ["title", "", "bad", "open"]
    lines = [text for text, _ in table]
    assert lines[0].split() == ["REC", "L", "START", "TOOK", "OUTCOME", "FILE"]
    assert lines[2].startswith(" 12  B  2026-") and lines[3].startswith("  3  C  -  ")
    assert len({line.index("exit 0") if "exit 0" in line else line.index("signal") for line in lines[1:3]}) == 1


# -- the command on logs the real daemon wrote ------------------------------


def filter_times(text: str, passdir: Path) -> str:
    """Replace what changes from run to run (daemontools' filter_svstat)."""
    text = text.replace(str(passdir), "$PASSDIR")
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "YYYY-MM-DD hh:mm:ss", text)
    return re.sub(r"\b\d+\.\d{3}s\b", "9.999s", text)


LIST_GOLDEN = """\
REC  L  START                  TOOK  OUTCOME                           FILE
  1  A  YYYY-MM-DD hh:mm:ss  9.999s  exit 0                            $PASSDIR/in/a b.g8
  1  B  YYYY-MM-DD hh:mm:ss  9.999s  exit 3                            $PASSDIR/in/bad.g8
  1  C  YYYY-MM-DD hh:mm:ss  9.999s  exit 0                            $PASSDIR/in/new\\012line.g8
  2  A  YYYY-MM-DD hh:mm:ss  9.999s  signal SIGTERM                    $PASSDIR/in/x.k
  3  A  YYYY-MM-DD hh:mm:ss  9.999s  error: No such file or directory  $PASSDIR/in/y.z
"""


@pytest.fixture
def worked(station):
    """A PASSDIR where the real waitd handled five files in three ways."""
    p = station.passdir
    station.handler("h", 'case "$1" in *bad*) echo "no good: $1" >&2; exit 3;; esac\necho "handled $1"\n')
    station.handler("killer", "kill -TERM $$\n")
    (p / "broken").write_text("#!/nonexistent/interpreter\n")
    (p / "broken").chmod(0o755)
    station.table(f"x in *.g8 {p}/h 0 -1 0", f"y in *.k {p}/killer 0 -1 0", f"z in *.z {p}/broken 0 -1 0")
    for name, age in (("a b.g8", 30), ("bad.g8", 20), ("new\nline.g8", 10), ("x.k", 5), ("y.z", 5)):
        station.drop(name, age_s=age)
    station.start()
    wait_for(lambda: len(station.ends()) == 5, 15, "five runs to end")
    assert station.stop() == 0
    return station


def test_list_is_golden(worked):
    result = run_tlogview(worked, "--list")
    assert result.returncode == 0, result.stderr
    assert filter_times(result.stdout, worked.passdir) == LIST_GOLDEN
    only_2 = run_tlogview(worked, "--list", "-r", "2", "--color", "always")
    assert only_2.stdout.count("\n") == 2 and "\033[31m" in only_2.stdout and "SIGTERM" in only_2.stdout
    assert run_tlogview(worked, "--list", "--since", "2999-01-01").stdout.count("\n") == 1


def test_record_logs_newest_first_each_with_its_header(worked):
    logs = worked.passdir / "logfiles"
    result = run_tlogview(worked, "-r", "1")
    assert result.returncode == 0, result.stderr
    titles = [line for line in result.stdout.splitlines() if line.startswith("==> ")]
    assert titles == [f"==> {logs}/incoming.1.{letter} <==" for letter in "CBA"]
    blocks = result.stdout.split("\n\n")
    assert all(block.splitlines()[1].startswith("waitd: start record=1 ") for block in blocks)
    one = run_tlogview(worked, "-r", "1", "-l", "b")
    assert one.stdout == (logs / "incoming.1.B").read_text()
    grep = run_tlogview(worked, "-r", "1", "-g", "no good")
    assert grep.stdout.splitlines()[0] == f"==> {logs}/incoming.1.B <=="
    assert grep.stdout.splitlines()[2:] == [f"no good: {worked.incoming}/bad.g8"]
    tail = run_tlogview(worked, "-r", "1", "-l", "A", "-n", "1").stdout.splitlines()
    assert tail[0].startswith("waitd: start ") and tail[1].startswith("waitd: end record=1 exit=0 ")


def test_incoming_log_filters(worked):
    everything = run_tlogview(worked).stdout
    assert everything == worked.log()
    warnings = run_tlogview(worked, "--level", "WARNING").stdout.splitlines()
    assert warnings and all(re.match(r"\S+ \S+ (WARNING|ERROR|CRITICAL) ", line) for line in warnings)
    assert any("killed by signal SIGTERM" in line for line in warnings)
    assert any("could not start" in line or "cannot execute" in line for line in warnings)
    grep = run_tlogview(worked, "-g", "bad.g8").stdout.splitlines()
    assert len(grep) >= 2 and all("bad.g8" in line for line in grep)
    assert run_tlogview(worked, "-n", "2").stdout.splitlines() == everything.splitlines()[-2:]
    assert run_tlogview(worked, "--since", "1h").stdout == everything
    assert run_tlogview(worked, "--since", "2999-01-01 00:00").stdout == ""


def test_errors_name_the_path(station, tmp_path):
    env = {k: v for k, v in station.env.items() if k != "PASSDIR"}
    no_passdir = run_tlogview(station, env=env)
    assert no_passdir.returncode == 2 and "no PASSDIR" in no_passdir.stderr
    missing = run_tlogview(station, "--passdir", str(tmp_path / "nope"), env=env)
    assert missing.returncode == 1
    assert missing.stderr == f"tlogview: {tmp_path}/nope: cannot read PASSDIR: No such file or directory\n"
    no_log = run_tlogview(station)
    assert no_log.returncode == 1 and no_log.stderr.startswith(f"tlogview: {station.passdir}/incoming.log: ")
    (station.passdir / "logfiles").mkdir()
    assert run_tlogview(station, "-r", "4").stderr.endswith("no handler logs of record 4\n")
    no_letter = run_tlogview(station, "-r", "4", "-l", "Q")
    assert no_letter.returncode == 1 and "incoming.4.Q: cannot read: No such file" in no_letter.stderr
    for usage in (["-l", "A"], ["-f", "-r", "1"], ["--list", "--level", "error"], ["-r", "0"], ["--since", "x"]):
        assert run_tlogview(station, *usage).returncode == 2, usage


def _on_pty(station, *args: str, env: dict[str, str]) -> bytes:
    """Run tlogview with its stdout on a terminal; return what it printed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(tlogview_cmd(*args), env=env, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO once the terminal is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
    return out


def test_colour_only_on_a_terminal_and_never_with_no_color(station):
    (station.passdir / "incoming.log").write_text(
        "2026-11-23 09:04:43.104 INFO plain\n2026-11-23 09:04:44.000 WARNING odd \x1b[2J name\n"
    )
    env = {k: v for k, v in station.env.items() if k != "NO_COLOR"}
    on_tty = _on_pty(station, env=env)
    assert b"\033[33m" in on_tty and b"\\x1b[2J" in on_tty and b"\x1b[2J" not in on_tty
    no_color = _on_pty(station, env=dict(env, NO_COLOR="1"))
    assert b"\033[" not in no_color and b"\\x1b[2J" in no_color
    piped = run_tlogview(station, env=env).stdout
    assert "\033[33m" not in piped and "\x1b[2J" in piped, "a pipe gets the log as it is"


class Lines:
    """Collect a process's stdout lines in a thread, to wait on them."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)


def test_follow_survives_rename_and_truncation(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.start()
    # INT as a terminal's ^C gives it: a run started in the background (`&`
    # in a script) leaves its processes INT ignored, and so their children.
    proc = subprocess.Popen(
        tlogview_cmd("-f"),
        env=station.env,
        stdout=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        out = Lines(proc)
        wait_for(lambda: out.count("waitd started"), 10, "the last lines before following")
        station.drop("a.g8", age_s=5)
        wait_for(lambda: out.count("a.g8: exit status 0"), 10, "a.g8 handled")
        log = station.passdir / "incoming.log"
        log.rename(station.passdir / "incoming.log.1")  # logrotate's default: rename, then HUP
        station.signal(signal.SIGHUP)
        wait_for(lambda: out.count("table reloaded"), 10, "the line written to the new log")
        station.drop("b.g8", age_s=5)
        wait_for(lambda: out.count("b.g8: exit status 0"), 10, "b.g8 handled after the rotation")
        os.truncate(log, 0)  # copytruncate
        station.signal(signal.SIGHUP)
        wait_for(lambda: out.count("table reloaded") == 2, 10, "a line after the truncation")
        assert out.count("b.g8: exit status 0") == 1, "nothing printed twice"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
        station.stop()
