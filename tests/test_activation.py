# SPDX-License-Identifier: MIT
"""A record checked against the system (spool/activation.py): its directory, its handler, waitd's own directories."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from waitd.config import table
from waitd.spool import activation


def _exe(path: Path, mode: int = 0o755) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


def _record(directory: str, process: str) -> table.Record:
    return table.Record(1, 1, "t", directory, "*", process, 0.0, 0, 0.0)


def test_activate_ok_with_bare_name_on_path(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _exe(bindir / "ingest")
    act = activation.activate(_record(str(tmp_path), "ingest"), str(tmp_path), f"/nonexistent:{bindir}")
    assert act == activation.Activation(str(bindir / "ingest"), None)


def test_activate_missing_directory(tmp_path: Path) -> None:
    _exe(tmp_path / "h")
    act = activation.activate(_record(str(tmp_path / "gone"), str(tmp_path / "h")), str(tmp_path), "")
    assert act.program is None
    assert act.problem == f"incoming-dir {tmp_path / 'gone'}: No such file or directory"


def test_activate_directory_is_a_file(tmp_path: Path) -> None:
    h = _exe(tmp_path / "h")
    act = activation.activate(_record(str(h), str(h)), str(tmp_path), "")
    assert act.problem == f"incoming-dir {h}: not a directory"


def test_activate_handler_not_on_path(tmp_path: Path) -> None:
    act = activation.activate(_record(str(tmp_path), "no-such-handler-waitd"), str(tmp_path), str(tmp_path))
    assert act.program is None
    assert act.problem == "process-name no-such-handler-waitd: not found in $PATH or not executable"


def test_activate_handler_on_path_but_not_executable(tmp_path: Path) -> None:
    _exe(tmp_path / "h", 0o644)
    act = activation.activate(_record(str(tmp_path), "h"), str(tmp_path), str(tmp_path))
    assert act.problem == "process-name h: not found in $PATH or not executable"


def test_activate_handler_path_not_executable(tmp_path: Path) -> None:
    h = _exe(tmp_path / "h", 0o644)
    act = activation.activate(_record(str(tmp_path), str(h)), str(tmp_path), "")
    assert act.program is None
    assert act.problem == f"process-name {h}: not found or not executable"


def test_activate_handler_path_is_a_directory(tmp_path: Path) -> None:
    act = activation.activate(_record(str(tmp_path), str(tmp_path)), str(tmp_path), "")
    assert act.problem == f"process-name {tmp_path}: not found or not executable"


def test_activate_relative_handler_path_is_against_passdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    h = _exe(tmp_path / "bin" / "h")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    act = activation.activate(_record(str(tmp_path), "bin/h"), str(tmp_path), "")
    assert act == activation.Activation(str(h), None)
    act = activation.activate(_record(str(tmp_path), "./bin/h"), str(tmp_path), "")
    assert act == activation.Activation(str(h), None)


def test_activate_bare_name_ignores_passdir(tmp_path: Path) -> None:
    # A bare name is looked up in $PATH only, never in PASSDIR or the cwd.
    _exe(tmp_path / "h")
    act = activation.activate(_record(str(tmp_path), "h"), str(tmp_path), "/nonexistent")
    assert act.program is None


def test_find_program_returns_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    h = _exe(tmp_path / "bin" / "h")
    monkeypatch.chdir(tmp_path)
    assert activation.find_program("h", str(tmp_path), "bin") == str(h)
    assert stat.S_ISREG(os.stat(h).st_mode)


def test_a_record_on_waitds_logfiles_is_inactive(tmp_path: Path) -> None:
    h = _exe(tmp_path / "h")
    (tmp_path / "logfiles").mkdir()
    act = activation.activate(_record(str(tmp_path / "logfiles"), str(h)), str(tmp_path), "")
    assert act == activation.Activation(None, f"incoming-dir {tmp_path}/logfiles is waitd's own logfiles directory")


def test_own_directory_compares_inodes_whatever_the_path(tmp_path: Path) -> None:
    (tmp_path / "logfiles").mkdir()
    (tmp_path / "in").mkdir()
    (tmp_path / "link").symlink_to(tmp_path)
    assert activation.own_directory(str(tmp_path / "link"), str(tmp_path)) == "passdir"
    assert activation.own_directory(str(tmp_path / "link" / "logfiles"), str(tmp_path)) == "logfiles"
    assert activation.own_directory(str(tmp_path / "in"), str(tmp_path)) is None
    assert activation.own_directory(str(tmp_path / "gone"), str(tmp_path)) is None


def test_in_passdir_waitds_own_files_never_match(tmp_path: Path) -> None:
    in_passdir = activation.matcher(_record(str(tmp_path), "h"), str(tmp_path))
    assert in_passdir("a.dat") and not in_passdir("incoming.history") and not in_passdir("incoming.log.1")
    assert in_passdir.select(["incoming.history", "a.dat", "incoming.log.1", "b"]) == ["a.dat", "b"]
    (tmp_path / "in").mkdir()
    elsewhere = activation.matcher(_record(str(tmp_path / "in"), "h"), str(tmp_path))
    assert elsewhere("incoming.history"), "only in PASSDIR itself are the names waitd's"


def test_writable_by_others_names_the_mode(tmp_path: Path) -> None:
    h = _exe(tmp_path / "h", 0o757)
    assert activation.writable_by_others(str(h)) == "writable by others (mode 0757)"
    h.chmod(0o755)
    assert activation.writable_by_others(str(h)) is None
    assert activation.writable_by_others(str(tmp_path / "gone")) is None
