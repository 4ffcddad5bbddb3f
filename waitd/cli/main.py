# SPDX-License-Identifier: MIT
"""The `waitd` command: its arguments, `--check`, `--enqueue`, and the daemon's start.

`main` reads the arguments and does one thing: `waitd worker` (the Celery
worker, `worker.main`), `waitd reduce` (a handler: `reduce`), `--demo` (`demo`), `--enqueue` (files into a
queue, each by its tmp/), `-s VERB` (`client`), `--check` (the table and
waitd.conf, every error printed, and a warning for each record that would
be inactive), or the daemon (`daemon.start`): in the foreground (`-f`,
`--once`) or detached.  Everything that can fail at start (no PASSDIR, a bad table, another waitd
running, an unwritable PASSDIR) is checked before detaching, and the
command the operator typed waits until the detached daemon has its pid
file and history open: it exits 0 only then, else it prints the daemon's
error and exits with its status.

Exit status: 0 fine, 1 failure at run time, 2 bad usage or table, 3
another waitd already runs on this PASSDIR.  Usage errors print
`waitd: ...` and a hint on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from waitd import __version__
from waitd.cli import taskapi
from waitd.config.errors import EXIT_USAGE, AlreadyRunning, TableError, UsageError, WaitdError
from waitd.config.passdir import conf_path, pid_path, table_path

if TYPE_CHECKING:
    from waitd.config import conf, table
    from waitd.daemon.loop import Settings

# Each path imports what it uses where it uses it: -s and --check never load
# the daemon's loop, executors or sinks, and -s nor --help the table's and
# waitd.conf's parsers (issue 21).

DEFAULT_INTERVAL_S = 10.0

MAX_OPTION_S = 86400  # --interval and --stop-timeout: a day; a selector's timeout overflows past 24 days
NO_PASSDIR = (
    "waitd: no PASSDIR: give --passdir DIR or set the PASSDIR environment variable "
    "(try 'waitd --demo' to see waitd work on a throw-away PASSDIR)"
)


_EPILOG = """\
With neither -g nor -i nor -f, waitd detaches as with -g.

  waitd reduce [--archive DIR] MESSAGE-FILE
                        a handler: run the ISIS reduction an ISIS message
                        asks for (waitd reduce --help)
  waitd worker [--broker URL] [--queue Q] [--concurrency N] [--passdir DIR]
               [--loglevel LEVEL]
                        run the handlers of run=celery records on this host:
                        a Celery worker (waitd worker --help)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="waitd",
        description="Wait for files to be delivered to incoming directories, then run a handler on each.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-g", action="store_true", help="detach and run in normal mode (the default)")
    mode.add_argument("-i", action="store_true", help="start in idle (hibernating) mode; detaches unless -f")
    p.add_argument(
        "-f", "--foreground", action="store_true", help="do not detach; log to stderr too (systemd, containers, tests)"
    )
    p.add_argument("--passdir", metavar="DIR", help="the PASSDIR (default: $PASSDIR)")
    p.add_argument(
        "--interval",
        metavar="S",
        type=_interval,
        help="sleep step between polls, in seconds (0.01 to 86400, default 10; 1 with --demo)",
    )
    p.add_argument(
        "--stop-timeout",
        metavar="S",
        type=_seconds,
        default=30.0,
        help="on TERM, how long to wait for running handlers before signalling them (0 to 86400 s, default 30)",
    )
    p.add_argument(
        "--poll", action="store_true", help="do not use inotify; find new files only by polling every interval (NFS)"
    )
    action = p.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="check the table, print every error, exit 0 or 2")
    action.add_argument(
        "--once", action="store_true", help="handle every file ready now, prune, and exit (a drain for cron jobs)"
    )
    action.add_argument(
        "-s",
        metavar="CMD",
        dest="command",
        choices=["reload", "stop", "idle", "resume", "wake", "status", "retry", "cancel", "show", "list", "pause"],
        help="signal the running daemon (reload, stop, idle, resume, wake), print its status, "
        "retry, cancel, pause or resume the files named (PATH...), show one file's story, list the files",
    )
    action.add_argument(
        "--demo", action="store_true", help="run on a throw-away PASSDIR with an example table, handler and files"
    )
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="with -s stop or -s reload: return once the signal is sent, without waiting for the daemon",
    )
    p.add_argument("--json", action="store_true", help="with -s status: the status document as JSON")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="with --check: print each record with its options as used"
    )
    p.add_argument(
        "--jobs",
        metavar="N",
        type=_jobs,
        help="at most N handlers of all records together (default: each record's jobs= only)",
    )
    p.add_argument(
        "--metrics",
        metavar="[HOST:]PORT",
        type=_metrics,
        help="serve Prometheus metrics over HTTP there (HOST default 127.0.0.1; overrides waitd.conf's metrics)",
    )
    p.add_argument(
        "--instance",
        metavar="NAME",
        type=_instance,
        help="this daemon's name in the queues it claims from (default: the host name and a hash of PASSDIR)",
    )
    action.add_argument(
        "--enqueue",
        metavar="QUEUE",
        help="put the files named (PATH...) into the queue directory QUEUE, never seen half-written, and exit",
    )
    taskapi.add_arguments(p)
    p.add_argument("paths", nargs="*", metavar="PATH", help="with -s retry, cancel, pause, resume, show or --enqueue")
    p.add_argument("--version", action="version", version=f"waitd {__version__}")
    return p


def _instance(text: str) -> str:
    from waitd.spool import queue

    if not queue.valid_instance(text):
        raise argparse.ArgumentTypeError(f"{text!r}: an instance name is letters, digits, '.', '_' and '-'")
    return text


def _jobs(text: str) -> int:
    from waitd.config import options

    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= options.MAX_JOBS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {options.MAX_JOBS}")
    return int(text)


def _metrics(text: str) -> tuple[str, int]:
    from waitd.config.confkeys import host_port

    try:
        return host_port(text, "127.0.0.1")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _interval(text: str) -> float:
    return _seconds(text, least=Decimal("0.01"))


def _seconds(text: str, least: Decimal = Decimal(0)) -> float:
    from waitd.config import table

    try:
        return table.decimal(text, MAX_OPTION_S, "seconds", least)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["reduce"]:  # waitd reduce: a handler, ISIS's PostProcessAdmin
        from waitd.cli import reduce

        return reduce.main(argv[1:])
    if argv[:1] == ["worker"]:  # waitd worker: a Celery worker for run=celery
        from waitd.worker import main as worker

        return worker.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return _act(args)
    except WaitdError as exc:
        print(f"waitd: {exc}" if not str(exc).startswith("waitd") else str(exc), file=sys.stderr)
        return exc.exit_code


def _act(args: argparse.Namespace) -> int:
    """What the arguments ask for: the demo, --enqueue, -s, or the daemon."""
    if args.demo:
        from waitd.cli import demo

        return demo.run(1.0 if args.interval is None else args.interval)
    if args.enqueue is not None:
        from waitd.cli.enqueue import enqueue

        return enqueue(args.enqueue, args.paths, args.max)
    passdir = _passdir(args.passdir)
    if args.command in taskapi.VERBS and (args.command != "resume" or args.paths):
        return taskapi.command(passdir, args.command, args.paths, args)
    if args.command:
        from waitd.cli import client

        return client.command(passdir, args.command, args.paths, wait=not args.no_wait, json_out=args.json)
    if args.paths:
        raise UsageError(f"unexpected argument {args.paths[0]!r}; only -s VERB and --enqueue take paths")
    return _daemon(args, passdir)


def _daemon(args: argparse.Namespace, passdir: str) -> int:
    """--check, or the daemon: in the foreground (-f, --once) or detached."""
    from waitd.config import conf, table
    from waitd.run.executors import celery_problem

    path = table_path(passdir)
    records, errors = table.read(path, passdir, os.environ, celery_problem(passdir))
    settings_conf, conf_errors = conf.read(conf_path(passdir))
    if args.check:
        from waitd.cli import checkconf

        code = _check(path, passdir, records, errors, args.verbose)
        checkconf.warn(settings_conf, records)
        return max(code, checkconf.check_conf(settings_conf, conf_errors, args.verbose))
    _refuse(path, errors)
    _refuse(settings_conf.path, conf_errors)
    settings = _settings(args, passdir, settings_conf)
    _preflight(passdir)
    from waitd.daemon import start

    if args.foreground or args.once:
        start.leave(start.serve(settings, records, foreground=True, conf=settings_conf))
    _warn_inactive(path, records, passdir, settings.instance)
    return start.detach(settings, records, settings_conf)


def _refuse(path: str, errors: list[TableError]) -> None:
    """Not starting with an invalid table or waitd.conf: each error, then UsageError."""
    from waitd.config import table

    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        raise UsageError(f"{path}: {table.summary(errors)}; not starting")


def _settings(args: argparse.Namespace, passdir: str, settings_conf: conf.Conf) -> Settings:
    """The daemon's settings: the command line's, else waitd.conf's [daemon], else the defaults."""
    from waitd.daemon.loop import Settings
    from waitd.spool import queue

    return Settings(
        passdir,
        DEFAULT_INTERVAL_S if args.interval is None else args.interval,
        args.stop_timeout,
        hibernate=args.i,
        once=args.once,
        poll_only=args.poll,
        jobs=args.jobs if args.jobs is not None else settings_conf.daemon.jobs,
        jobs_given=args.jobs is not None,
        metrics=args.metrics or settings_conf.daemon.metrics,
        http=args.http or settings_conf.daemon.http,
        instance=args.instance or queue.default_instance(passdir),
    )


def _check(
    table_path: str, passdir: str, records: Sequence[table.Record], errors: list[TableError], verbose: bool
) -> int:
    """--check: every error and a summary on stderr (exit 2), or one line on
    stdout; with -v, first each record with its options as they will be used."""
    from waitd.config import table

    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        print(f"{table_path}: {table.summary(errors)}; the table is invalid", file=sys.stderr)
        return EXIT_USAGE
    for record in records:
        # Valid, but it would not run now: say so, without failing the
        # check (the directory may appear later).
        problem = _problem(record, passdir, os.environ.get("PATH", os.defpath))
        if problem:
            print(
                f"{table_path}:{record.line}: warning: record {record.number} would be inactive: {problem}",
                file=sys.stderr,
            )
        _note_own_directory(table_path, record, passdir)
        if verbose:
            r = record
            print(
                f"record {r.number} ({table_path}:{r.line}): {r.telem} {r.directory} {r.template} {r.process} "
                f"wait={r.wait_s:g} keep={r.keep} hours-too-old={r.too_old_h:g} " + " ".join(r.options.described())
            )
    print(f"{table_path}: {len(records)} record(s), valid")
    return 0


def _passdir(given: str | None) -> str:
    passdir = given or os.environ.get("PASSDIR")
    if not passdir:
        raise UsageError(NO_PASSDIR.removeprefix("waitd: "))
    passdir = os.path.abspath(os.path.expanduser(passdir))
    if not os.path.exists(passdir):
        raise UsageError(f"{passdir}: PASSDIR does not exist (make it with: mkdir -p {passdir})")
    if not os.path.isdir(passdir):
        raise UsageError(f"{passdir}: PASSDIR is not a directory")
    return passdir


def _preflight(passdir: str) -> None:
    """What can be said before detaching: the claim itself is made by serve."""
    from waitd.daemon import pidfile

    if not os.access(passdir, os.W_OK | os.X_OK):
        raise WaitdError(f"{passdir}: PASSDIR is not writable")
    held = pidfile.holder(passdir)
    if held is not None:
        raise AlreadyRunning(pid_path(passdir), held.pid)
    stale = pidfile.stale_pid(passdir)
    if stale is not None:
        print(f"waitd: warning: {pidfile.stale_message(passdir, stale)}", file=sys.stderr)


def _note_own_directory(table_path: str, record: table.Record, passdir: str) -> None:
    """Tell `--check` what waitd does with a record on PASSDIR itself (one
    on its logfiles/ is inactive: `activation.activate` says so)."""
    from waitd.spool import activation

    if activation.own_directory(record.directory, passdir) == "passdir":
        print(
            f"{table_path}:{record.line}: note: record {record.number}'s incoming-dir is PASSDIR; "
            "waitd's own files (incoming, incoming.log*, incoming.history, waitd.*, logfiles, events) "
            "are never handled or removed",
            file=sys.stderr,
        )


def _problem(record: table.Record, passdir: str, path_env: str) -> str | None:
    """Why the record would be inactive at start (a queue's directories
    that the daemon makes are no reason)."""
    from waitd.spool import activation

    if record.options.claim:
        from waitd.spool import claims  # the queues' module: only for a claim=yes record

        return claims.preview(record, passdir, path_env)
    return activation.activate(record, passdir, path_env).problem


def _warn_inactive(table_path: str, records: Sequence[table.Record], passdir: str, instance: str) -> None:
    """Say on the terminal, before detaching, which records would do nothing."""
    from waitd.spool import locks

    path_env = os.environ.get("PATH", os.defpath)
    inactive = 0
    for record in records:
        problem = _problem(record, passdir, path_env)
        if problem is None and record.options.claim:
            holder = locks.instance_in_use(os.path.dirname(record.directory), instance)
            if holder is not None:
                problem = f"instance {instance!r} is in use in its queue by another waitd ({holder})"
        if problem:
            inactive += 1
            print(
                f"waitd: warning: {table_path}:{record.line}: record {record.number} is inactive: {problem}",
                file=sys.stderr,
            )
    if records and inactive == len(records):
        print(
            "waitd: warning: every record is inactive; nothing will be handled until the table is fixed"
            " and reloaded (waitd -s reload)",
            file=sys.stderr,
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
