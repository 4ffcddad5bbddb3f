# SPDX-License-Identifier: MIT
"""The table as the daemon reads it: --check, refusal, inactive records."""

from __future__ import annotations

import os
import re
import signal
import stat
import sys

import pytest
from conftest import wait_for

from waitd.cli import main as cli

MANUAL_RECORD = "gvar /home/xtuser/incoming *.g8 gvar_incproc 60 1 4"

KNOWN = (
    "jobs, timeout, retries, retry, key, pattern, done, topic, critical, wanted, all, timeliness, "
    "tolerance, slot, vary, claim, next, out-limit, out-wait, run, fields, area, duration, sensor"
)


def test_check_accepts_the_manual_pages_record(station):
    station.table("# the record of the original manual page", "", MANUAL_RECORD)
    r = station.run("--check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 record(s), valid" in r.stdout


BAD_TABLE = ("a in * h 1 1", "# c", "b in * h x 1 1", "c in * h 1 -2 1", "d in * h 1 1 1 speed=3", "e in a/b h 1 1 1")
BAD_TABLE += ("f in * h 1e3 +2 1",)


def bad_table_errors(station):
    t = f"{station.passdir}/incoming"
    return [
        f"{t}:1: expected 7 fields, got 6",
        f"{t}:3: wait-until-age 'x' is not a plain decimal number such as 30 or 0.5",
        f"{t}:4: keep-after '-2' is not a whole number such as 5, or -1 (keep every file)",
        f"{t}:5: unknown option 'speed' (known: {KNOWN})",
        f"{t}:6: name-template 'a/b' must not contain '/': it matches names in one directory",
        f"{t}:7: wait-until-age '1e3' is not a plain decimal number such as 30 or 0.5",
        f"{t}:7: keep-after '+2' is not a whole number such as 5, or -1 (keep every file)",
    ]


def test_check_prints_every_error_with_file_and_line(station):
    station.table(*BAD_TABLE)
    r = station.run("--check")
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        *bad_table_errors(station),
        f"{station.passdir}/incoming: 7 error(s) on 6 line(s); the table is invalid",
    ]


def test_check_of_a_valid_table_prints_one_line_on_stdout(station):
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0", "y nowhere *.g8 /bin/true 0 -1 0")
    station.recorder()
    r = station.run("--check")
    assert r.returncode == 0
    assert r.stdout == f"{station.passdir}/incoming: 2 record(s), valid\n"
    assert r.stderr.splitlines() == [
        f"{station.passdir}/incoming:2: warning: record 2 would be inactive: "
        f"incoming-dir {station.passdir}/nowhere: No such file or directory"
    ]


def test_bad_table_refuses_to_start(station):
    station.table(*BAD_TABLE)
    r = station.run("-f")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        *bad_table_errors(station),
        f"waitd: {station.passdir}/incoming: 7 error(s) on 6 line(s); not starting",
    ]


def test_inactive_records_are_logged_once_and_others_work(station):
    station.recorder()
    station.table(
        "a nowhere *.g8 rec 0 -1 0", "b in *.x no-such-handler-xyz 0 -1 0", f"c in *.g8 {station.passdir}/rec 0 -1 0"
    )
    station.drop("a.g8")
    station.start()
    wait_for(lambda: station.ran(), 5)
    log = station.log()
    assert f"record 1 ({station.passdir}/incoming:1): inactive: incoming-dir {station.passdir}/nowhere" in log
    assert "record 2 (" in log and "no-such-handler-xyz: not found in $PATH or not executable" in log
    station.stop()
    assert station.log().count("): inactive: ") == 2


def test_handler_found_in_path_and_relative_dirs_and_vars(station):
    bindir = station.root / "bin"
    bindir.mkdir()
    h = bindir / "myhandler"
    h.write_text(f'#!/bin/sh\nprintf "%s\\0" "$1" >> "{station.passdir}/ran"\n')
    h.chmod(0o755)
    station.env["PATH"] = f"{bindir}:{station.env['PATH']}"
    station.env["SPOOL"] = "in"
    station.table("x $SPOOL *.g8 myhandler 0 -1 0")
    station.drop("a.g8")
    station.start()
    wait_for(lambda: station.ran() == [os.fsencode(station.incoming / "a.g8")], 5)
    station.stop()
    assert station.history()[0].process == "myhandler"


def test_handler_environment_cwd_and_fds(station):
    # A Python handler exec'd directly, so no shell adds descriptors of its own.
    h = station.passdir / "env.py"
    h.write_text(
        "#!" + sys.executable + "\n"
        "import os, sys\n"
        "fds = []\n"
        "for fd in range(4096):\n"
        "    try:\n"
        "        os.fstat(fd)\n"
        "        fds.append(str(fd))\n"
        "    except OSError:\n"
        "        pass\n"
        "e = os.environ\n"
        f"with open({str(station.passdir / 'seen')!r}, 'w') as f:\n"
        "    print(os.getcwd(), file=f)\n"
        "    print('|'.join([e['WAITD_RECORD'], e['WAITD_TELEM'], e['WAITD_FILE'], e['WAITD_PASSDIR']]), file=f)\n"
        "    print(' '.join(fds), file=f)\n"
        "    print(repr(sys.stdin.read()), os.getsid(0) == os.getpid(), sys.argv[1:], file=f)\n"
        "print('to-log', flush=True)\n"
        "print('to-err', file=sys.stderr)\n"
    )
    h.chmod(0o755)
    station.table(f"gvar in *.g8 {h} 0 -1 0")
    station.drop("a.g8")
    station.start()
    wait_for(lambda: station.ends(), 5)
    # waitd steps into the incoming directory only for the spawn.
    assert os.readlink(f"/proc/{station.proc.pid}/cwd") == os.getcwd()
    station.stop()
    cwd, env, fds, rest = (station.passdir / "seen").read_text().splitlines()[:4]
    assert cwd == str(station.incoming)
    assert env == f"1|gvar|{station.incoming}/a.g8|{station.passdir}"
    assert fds.split() == ["0", "1", "2"], "the handler got more than fds 0-2"
    assert rest == f"'' True ['{station.incoming}/a.g8']", "stdin not /dev/null, no own session, or bad argv"
    log = (station.passdir / "logfiles" / "incoming.1.A").read_text()
    lines = log.splitlines()
    assert lines[0].startswith("waitd: start record=1 telem=gvar program=")
    assert "to-log" in lines and "to-err" in lines
    assert lines[-1].startswith("waitd: end record=1 exit=0 took=")
    assert stat.S_IMODE(os.stat(station.passdir / "logfiles" / "incoming.1.A").st_mode) == 0o644


def test_log_letters_cycle_and_continue_after_restart(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    for i in range(3):
        station.drop(f"{i}.g8", age_s=10 - i)
    station.start()
    wait_for(lambda: len(station.ends()) == 3)
    station.stop()
    logs = sorted(os.listdir(station.passdir / "logfiles"))
    assert logs == ["incoming.1.A", "incoming.1.B", "incoming.1.C"]
    station.drop("3.g8")
    station.start()
    wait_for(lambda: len(station.ends()) == 4)
    station.stop()
    assert "3.g8" in (station.passdir / "logfiles" / "incoming.1.D").read_text()


def test_check_warns_about_records_that_would_be_inactive(station):
    station.table("x nowhere *.g8 /bin/true 0 -1 0")
    r = station.run("--check")
    assert r.returncode == 0
    assert f"{station.passdir}/incoming:1: warning: record 1 would be inactive: incoming-dir" in r.stderr


def test_a_record_on_waitds_logfiles_is_inactive_for_check_and_start_alike(station):
    (station.passdir / "logfiles").mkdir()
    station.table("x logfiles * /bin/true 0 -1 0")
    why = f"record 1 would be inactive: incoming-dir {station.passdir}/logfiles is waitd's own logfiles directory"
    r = station.run("--check")
    assert r.returncode == 0 and r.stderr.count("would be inactive") == 1 and why in r.stderr, r.stderr
    r = station.run("-g", "--interval", "0.2")  # says it on the terminal before detaching
    try:
        assert r.returncode == 0 and why.replace("would be", "is") in r.stderr, r.stderr
        wait_for(lambda: "waitd's own logfiles directory" in station.log(), 10, "the daemon's line")
    finally:
        stopped = station.run("-s", "stop")
    assert stopped.returncode == 0, stopped.stderr


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--interval", "1e9", "is not a plain decimal number"),
        ("--interval", "100000", "is out of range: 0.01 to 86400 seconds"),
        ("--interval", "86400.5", "is out of range: 0.01 to 86400 seconds"),
        ("--interval", "0.001", "is out of range: 0.01 to 86400 seconds"),
        ("--interval", "nan", "is not a plain decimal number"),
        ("--interval", "1_0", "is not a plain decimal number"),
        ("--interval", "\u0663", "is not a plain decimal number"),
        ("--stop-timeout", "1e9", "is not a plain decimal number"),
        ("--stop-timeout", "86401", "is out of range: 0 to 86400 seconds"),
        ("--stop-timeout", "+5", "is not a plain decimal number"),
        ("--interval", "0", "is out of range: 0.01 to 86400 seconds"),
    ],
)
def test_interval_and_stop_timeout_take_plain_bounded_numbers(capsys, option, value, why):
    """The command line's parser, in this process: argparse refuses the
    value before anything else is looked at (no daemon is started for it)."""
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["-f", option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"waitd: error: argument {option}: {value!r} {why}" in err
    assert "Traceback" not in err


def test_check_names_each_line_with_an_odd_number(station):
    lines = ["a in * h 1e300 1 1", "b in * h 1_000 1 1", "c in * h 1 +2 1", "d in * h -0 1 1", "e in * h \u0663 1 1"]
    lines += ["f in * h 1 1 1e300", "g in * h 31536001 1 1", "h in * h 1 1 nan", "i in * h 1 1 1", "j in * h .5 1 1"]
    (station.passdir / "incoming").write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = station.run("--check")
    assert r.returncode == 2
    t = f"{station.passdir}/incoming"
    named = sorted({int(n) for n in re.findall(rf"^{re.escape(t)}:(\d+): ", r.stdout + r.stderr, re.M)})
    assert named == [1, 2, 3, 4, 5, 6, 7, 8, 10]


def test_a_table_with_the_maximum_values_runs(station):
    # The limits of incoming(5) must overflow nothing downstream: the file
    # of record 1 is listed, aged and checked for expiry on every pass
    # (wait and hours at their maxima), while record 2 handles its files.
    station.recorder()
    station.table(
        f"max in *.g8 {station.passdir}/rec 31536000 1000000000 876000", f"now in *.x {station.passdir}/rec 0 -1 0"
    )
    station.drop("late.g8")
    station.drop("a.x")
    station.start("--stop-timeout", "86400")
    wait_for(lambda: station.ran() == [os.fsencode(station.incoming / "a.x")], 10, "a.x to be handled")
    station.drop("b.x")
    wait_for(lambda: len(station.ran()) == 2, 10, "b.x to be handled")
    assert station.stop() == 0
    assert (station.incoming / "late.g8").exists()
    for text in (station.log(), station.stderr()):
        assert "Traceback" not in text and "Error" not in text


HUGE = ("pattern={stem:999999999999d}.d", "key={name:999999999999}", "done={stem:>99999999}.ok", "pattern={n:n}.d")


def test_a_huge_width_or_an_unusable_pattern_is_refused_at_check_start_and_hup(station):
    """`{x:999999999999d}` once passed --check; then every file raised (a
    MemoryError, an OverflowError), a traceback was logged twice a second
    for ever and the record handled nothing.  Now it is an error of its
    line, and a HUP to such a table keeps the old one, which goes on."""
    station.recorder()
    t = f"{station.passdir}/incoming"
    station.table(*(f"x{i} in *.d {station.passdir}/rec 0 -1 0 {option}" for i, option in enumerate(HUGE)))
    r = station.run("--check")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.splitlines() == [
        f"{t}:1: option pattern={HUGE[0][8:]}: {{stem}}: width 999999999999 is more than 255"
        " (the most a file name holds)",
        f"{t}:2: option key={HUGE[1][4:]}: {{name}}: width 999999999999 is more than 255 (the most a file name holds)",
        f"{t}:3: option done={HUGE[2][5:]}: {{stem}}: width 99999999 is more than 255 (the most a file name holds)",
        f"{t}:4: option pattern={HUGE[3][8:]}: trollsift cannot use it: KeyError: 'n'",
        f"{t}: 4 error(s) on 4 line(s); the table is invalid",
    ]
    r = station.run("-f")
    assert r.returncode == 2 and f"{t}:1: option pattern=" in r.stderr and "not starting" in r.stderr
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0 key={{stem}}")
    station.start()
    station.table(*(f"x{i} in *.d {station.passdir}/rec 0 -1 0 {option}" for i, option in enumerate(HUGE)))
    station.signal(signal.SIGHUP)
    wait_for(lambda: "table not reloaded" in station.log(), 10, "the reload refused")
    station.drop("a.d")
    wait_for(lambda: len(station.ran()) == 1, 10, "a.d handled by the table in force")
    assert station.stop() == 0
    assert "Traceback" not in station.log() and "unexpected error" not in station.log()


def test_check_lists_every_error_of_a_record_and_of_a_sink(station):
    """--check once stopped at the first error of a record or a section: a
    bad value hid the options' checks together (run=celery without
    timeout=, a key= naming no field), a bad record hid that run=celery has
    no broker, a bad port hid a sink without destinations, and a jsonl
    sink writing into a missing directory passed."""
    t = f"{station.passdir}/incoming"
    c = f"{station.passdir}/waitd.conf"
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0 jobs=0 run=celery key={{nope}}")
    r = station.run("--check")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"{t}:1: option jobs=0: expected a whole number from 1 to 1000",
        f"{t}:1: run=celery needs timeout=: a run whose worker dies is known lost only when its timeout passes",
        f"{t}:1: option key={{nope}}: no field {{nope}} in (no pattern=) name, stem, suffix, dir, telem",
        f"{t}:1: run=celery needs a broker: {c} has no [celery] section",
        f"{t}: 4 error(s) on 1 line(s); the table is invalid",
    ]
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    station.recorder()
    (station.passdir / "waitd.conf").write_text(
        "[sink mq]\ntype = stomp\nport = 99999\nretry = 5\nretry-max = 1\nuser = u\n"
        "[sink ev]\ntype = jsonl\npath = nowhere/events.jsonl\n"
        "[sink ok]\ntype = jsonl\npath = events.jsonl\n"
    )
    r = station.run("--check")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"{c}:1: [sink mq]: retry-max is less than retry",
        f"{c}:1: [sink mq]: give at least one of started =, complete =, error =, skipped = (the destinations)",
        f"{c}:1: [sink mq]: give user = and password = together",
        f"{c}:3: [sink mq]: port = 99999: expected a whole number from 1 to 65535",
        f"{c}:9: [sink ev]: path = nowhere/events.jsonl: no such directory {station.passdir}/nowhere",
        f"{c}: 5 error(s) on 3 line(s); waitd.conf is invalid",
    ]
    started = station.run("-f")
    assert started.returncode == 2 and "no such directory" in started.stderr and "not starting" in started.stderr
