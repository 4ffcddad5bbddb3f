# SPDX-License-Identifier: MIT
"""Carrying out the removals the scheduler planned: expiry, keep-after, retention.

`remove` removes one file the plan named (`scheduler.Remove`): a file of
the record's own directory through `unlink.remove`, which removes only the
version planned (a file rewritten in place is looked at again instead,
`observe.look_again`; one gone already is forgotten, quietly), with its
companion (done=); a file of a queue's errors/ or tmp/ by its path.  It
logs each removal (a warning for a file that expired before it ever ran)
and returns it, for the record's tally and the events; a file that cannot
be removed is logged once a version and listed by the status.

The decisions are `decide.removal`'s, taken by `decide.scheduler`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from waitd.decide.facts import FileFact
from waitd.decide.readiness import companion_name
from waitd.journal.history import History, escape
from waitd.spool import observe, unlink
from waitd.spool.state import FileState
from waitd.spool.unlink import Outcome

log = logging.getLogger("waitd")


@dataclass(slots=True)
class Removed:
    """A file removed: what the events tell of it."""

    fact: FileFact
    why: str
    directory: str | None  # not the record's own: a queue's


def remove(st: FileState, history: History, fact: FileFact, why: str, now_ns: int) -> Removed | None:
    """Remove a file of the record's directory, if it is still the version planned."""
    if st.spool is None:
        return None
    path = escape(st.path_of(fact.name))
    removal = unlink.remove(st.spool.fd, fact)
    if removal.outcome is Outcome.REMOVED:
        level = logging.WARNING if "never handled" in why else logging.INFO
        log.log(level, "record %d: removed %s: %s", st.number, path, why)
        _remove_companion(st, fact.name)
        st.forget(fact.name)
        return Removed(fact, why, None)
    if removal.outcome is Outcome.GONE:
        st.forget(fact.name)  # another record sharing the directory removed it
    elif removal.outcome is Outcome.CHANGED:
        observe.look_again(st, history, fact.name, now_ns)  # a new delivery: a candidate again
    elif st.unremovable.get(fact.name, (None,))[0] != fact.version:
        # Once per version, not at every pass: the next poll tries again.
        log.warning("record %d: cannot remove %s (%s): %s", st.number, path, why, removal.reason)
        st.unremovable[fact.name] = (fact.version, removal.reason)
    return None


def remove_queued(number: int, directory: str, fact: FileFact, why: str) -> Removed | None:
    """Remove a file of a queue's errors/ or tmp/ (retention)."""
    path = os.path.join(directory, fact.name)
    try:
        os.unlink(path)
    except OSError:
        return None  # gone, or not ours to remove: the next poll looks again
    log.info("record %d: removed %s: %s", number, escape(path), why)
    return Removed(fact, why, directory)


def _remove_companion(st: FileState, name: str) -> None:
    companion, _ = companion_name(st.record.options, name, st.fields(name))
    if companion is None or st.spool is None:
        return
    st.companions.pop(companion, None)
    removal = unlink.remove_name(st.spool.fd, companion)
    shown = escape(st.path_of(companion))
    if removal.outcome is Outcome.REMOVED:
        log.info("record %d: removed %s: the companion of %s", st.number, shown, escape(name))
    elif removal.outcome is Outcome.REFUSED:
        log.warning("record %d: cannot remove %s: %s", st.number, shown, removal.reason)
