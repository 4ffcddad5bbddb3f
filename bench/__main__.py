# SPDX-License-Identifier: MIT
"""`python -m bench [--quick] [--idle-s S] [--only NAME ...]`: run the benchmarks."""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench import (
    arrivals,
    backlog,
    celery,
    common,
    events,
    groups,
    http,
    idle,
    jobs,
    outage,
    queues,
    regions,
    scale,
    sources,
)

SCENARIOS = {
    "backlog": backlog,
    "jobs": jobs,
    "arrivals": arrivals,
    "groups": groups,
    "regions": regions,
    "queues": queues,
    "events": events,
    "idle": idle,
    "scale": scale,
    "celery": celery,
    "http": http,
    "sources": sources,
    "outage": outage,
}

METHOD = """\
method: every scenario runs the real daemon (python -m waitd) on a fresh temporary PASSDIR under {tmp},
  next to a baseline measured in the same run; times come from waitd's own history (at= of status 0/2)
  or from the handler's own clock; see bench/<scenario>.py for the details of each.{quick}"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description="waitd benchmarks (issue 5)")
    p.add_argument("--quick", action="store_true", help="about 5x smaller and shorter: a smoke run")
    p.add_argument(
        "--idle-s",
        type=float,
        default=60.0,
        metavar="S",
        help="length of the idle window (default 60; --quick takes a fifth)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=list(SCENARIOS),
        metavar="NAME",
        help=f"run only these scenarios ({', '.join(SCENARIOS)})",
    )
    args = p.parse_args(argv)
    opts = common.Options(quick=args.quick, idle_s=args.idle_s)

    print("waitd benchmarks" + (" (--quick: counts and durations / 5)" if opts.quick else ""))
    for line in common.machine():
        print(line)
    print(METHOD.format(tmp=common.TMP_BASE, quick=" --quick figures are only a smoke test." if opts.quick else ""))
    print(flush=True)

    report = common.Report()
    t0 = time.monotonic()
    try:
        for name in args.only or SCENARIOS:
            try:
                SCENARIOS[name].run(opts, report)
            except Exception as exc:  # one broken scenario must not hide the others
                report.say(f"{name}: FAILED: {type(exc).__name__}: {exc}")
            print(flush=True)
    finally:
        left = common.no_leftovers()
        if left:
            print(f"warning: killed processes left behind: {left}", file=sys.stderr)
    load = os.getloadavg()
    print(
        f"targets (issue 5); run took {time.monotonic() - t0:.0f} s, "
        f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    for check in report.checks:
        print(check.line())
    missed = sum(1 for c in report.checks if c.met is False)
    print(f"{len(report.checks) - missed} of {len(report.checks)} targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
