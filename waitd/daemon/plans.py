# SPDX-License-Identifier: MIT
"""The plan of a turn: the quiet turn's, or the full pass.

A turn of a drain reaps a run and starts the next file; the full pass
(`turn.situation`, then `scheduler.plan`) turns the whole state into a
situation first: every record's seat, every run's view, the removal
facts.  `plan` asks `decide.quiet.plan` instead when the turn is quiet
(the conditions of that module, looked at in the state itself): no
listing (nor --once's closing turn), the daemon active, the history
taking starts, no --jobs; no record that publishes, claims from a queue,
backs off, waits for its executor, or has files for keep-after to
remove; every run running with no timeout, or ended unsignalled (the
runs' part: `Runs.quiet`).  Anything else takes the full pass.  Both give
the same plan (tests/test_quiet.py compares them on varied states, pure
and in a real daemon's turns).

Nothing is kept between turns: what is quiet is looked at each turn, so
no change (a reload, a signal, a control request, a deadline, another
record's run) can leave a stale part behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from waitd.daemon import turn
from waitd.decide import quiet, scheduler
from waitd.decide.scheduler import Mode, Plan

if TYPE_CHECKING:
    from waitd.daemon.loop import Daemon


def plan(d: Daemon, now: float, now_ns: int, listing: bool) -> Plan:
    """The turn's plan (`listing`: the turn listed, or closes --once's drain)."""
    made = None if listing else quiet_plan(d, now, now_ns)
    if made is not None:
        return made
    return scheduler.plan(now, turn.situation(d, now, now_ns, listing))


def quiet_plan(d: Daemon, now: float, now_ns: int) -> Plan | None:
    """`decide.quiet.plan` of the turn, or None when it is not quiet."""
    if d.mode is not Mode.ACTIVE or not d.journal.may_start or d.settings.jobs is not None:
        return None
    seated = turn.seated(d)  # the full pass's seats
    for entry in seated:
        record = entry.record
        if (
            record.options.claim
            or record.publish_only
            or entry.tally.backoff_until > now
            or turn.sweeping(entry, False)
            or not d.dispatch.of(record.options.run).ready()
        ):
            return None
    runs = d.runs.quiet(d.works.number_of)
    if runs is None:
        return None
    d.news = []  # as `turn.situation` starts
    records = [
        quiet.Record(e.number, e.record.options.jobs, turn.taker(d, e, now, now_ns), e.record.options.key is not None)
        for e in seated
    ]
    return quiet.plan(now, records, *runs)
