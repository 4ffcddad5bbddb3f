# SPDX-License-Identifier: MIT
"""The names of waitd's files in PASSDIR (config/passdir.py)."""

from __future__ import annotations

import pytest

from waitd.config import passdir as names


def test_each_path_is_its_name_in_passdir():
    p = "/srv/waitd"
    assert names.table_path(p) == "/srv/waitd/incoming"
    assert names.log_path(p) == "/srv/waitd/incoming.log"
    assert names.history_path(p) == "/srv/waitd/incoming.history"
    assert names.pid_path(p) == "/srv/waitd/waitd.pid"
    assert names.status_path(p) == "/srv/waitd/waitd.status"
    assert names.socket_path(p) == "/srv/waitd/waitd.sock"
    assert names.conf_path(p) == "/srv/waitd/waitd.conf"
    assert names.logfiles_path(p) == "/srv/waitd/logfiles"
    assert names.events_path(p) == "/srv/waitd/events"
    assert names.handler_log_path(p, 12, "C") == "/srv/waitd/logfiles/incoming.12.C"


@pytest.mark.parametrize("record, letter", [(1, "A"), (12, "Z"), (1000, "Q")])
def test_handler_log_names_round_trip(record: int, letter: str):
    assert names.parse_handler_log_name(names.handler_log_name(record, letter)) == (record, letter)


@pytest.mark.parametrize("name", ["incoming.1", "incoming.1.a", "incoming.x.A", "incoming.1.AB", "other.1.A"])
def test_other_names_are_no_handler_logs(name: str):
    assert names.parse_handler_log_name(name) is None


@pytest.mark.parametrize(
    "name",
    ["incoming", "incoming.log", "incoming.log.1", "incoming.log.2.gz", "incoming.history", "incoming.history.tmp"]
    + ["waitd.pid", "waitd.status", "waitd.status.tmp", "waitd.sock", "waitd.conf", "logfiles", "events"],
)
def test_waitds_own_files(name: str):
    assert names.is_own(name)


@pytest.mark.parametrize("name", ["incoming.dat", "incoming.logs", "waitd.pid.old", "events.json", "a.g8"])
def test_other_files_are_not_waitds(name: str):
    assert not names.is_own(name)
