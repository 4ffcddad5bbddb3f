# SPDX-License-Identifier: MIT
"""A run's log file as waitd writes it: its header, then the footer on a
line of its own, read back from a real file."""

from __future__ import annotations

import os
from pathlib import Path

from waitd.config import table
from waitd.formats import handler_log, response
from waitd.run import runner
from waitd.run.template import Template


def _record(tmp_path: Path) -> table.Record:
    (tmp_path / "in").mkdir()
    records, errors = table.parse(f"t {tmp_path}/in *.dat /bin/true 1 -1 0\n", "incoming", str(tmp_path), {})
    assert not errors
    return records[0]


def test_the_footer_has_a_line_of_its_own(tmp_path: Path) -> None:
    """The footer follows the header when the handler wrote nothing (the
    size waitd knows, no read), and starts a new line after output that
    does not end one."""
    (tmp_path / "logfiles").mkdir()
    record = _record(tmp_path)
    for output, letter in ((b"", "A"), (b"no newline", "B"), (b"a line\n", "C")):
        name, fd, head = Template(str(tmp_path), record, "/bin/true", {}).open_log(["/x/f.dat"], letter, 1.0)
        assert head == os.fstat(fd).st_size
        os.write(fd, output)
        ends = runner._ends_line(fd, head)
        assert ends is (not output or output.endswith(b"\n"))
        runner._write(fd, ("" if ends else "\n") + handler_log.footer(1, exit=0, took=0.0, at=2.0))
        os.close(fd)
        lines = Path(name).read_bytes().split(b"\n")
        assert lines[0].startswith(b"waitd: start") and lines[-2].startswith(b"waitd: end"), lines


def test_the_footer_sees_what_a_handler_wrote_to_the_log_by_its_name(tmp_path: Path) -> None:
    """A handler that opens WAITD_LOG itself writes through a descriptor of
    its own: the size the footer looks at is the file's, not waitd's offset."""
    (tmp_path / "logfiles").mkdir()
    name, fd, head = Template(str(tmp_path), _record(tmp_path), "/bin/true", {}).open_log(["/x/f.dat"], "A", 1.0)
    with open(name, "ab") as own:
        own.write(b"no newline")
    assert runner._ends_line(fd, head) is False
    with open(name, "ab") as own:
        own.write(b"\n")
    assert runner._ends_line(fd, head) is True
    os.close(fd)


def _open(tmp_path: Path, record: table.Record, letter: str = "A") -> tuple[str, int]:
    name, fd, head = Template(str(tmp_path), record, "/bin/true", {}).open_log(["/x/f.dat"], letter, 1.0)
    assert head == os.fstat(fd).st_size
    return name, fd


def test_a_letters_old_log_is_written_over_when_nothing_has_it_open(tmp_path: Path) -> None:
    """The same file (no unlink and create), holding only the new run's
    header: the old run's output and response are gone; the handler
    appends after the header."""
    (tmp_path / "logfiles").mkdir()
    record = _record(tmp_path)
    name, fd = _open(tmp_path, record)
    os.write(fd, b"the old run's output, longer than a header line " * 10 + b"\n")
    os.close(fd)
    Path(runner.response_name(name)).write_text('{"skip": "old"}')
    pin = os.open(name, os.O_PATH)  # the old file (a path descriptor is no open file to a lease)
    name, fd = _open(tmp_path, record)
    assert os.fstat(pin).st_nlink == 1 and os.fstat(pin).st_ino == os.stat(name).st_ino  # the same file
    os.close(pin)
    os.lseek(fd, 0, os.SEEK_SET)  # O_APPEND: a write goes to the end all the same
    os.write(fd, b"new output\n")
    os.close(fd)
    data = Path(name).read_bytes().split(b"\n")
    assert data[0].startswith(b"waitd: start") and data[1:] == [b"new output", b""], data
    assert not Path(runner.response_name(name)).exists()


def test_a_log_still_open_elsewhere_is_made_anew(tmp_path: Path) -> None:
    """A lingering child of the old run still holding its log: the new run
    gets a new file, and what the child writes later is not in it."""
    (tmp_path / "logfiles").mkdir()
    record = _record(tmp_path)
    name, fd = _open(tmp_path, record)
    lingering = os.dup(fd)
    os.close(fd)
    name, fd = _open(tmp_path, record)
    assert os.fstat(lingering).st_nlink == 0  # the old file: unlinked, the new run's is another
    os.write(lingering, b"late output of the old run\n")
    os.close(lingering)
    os.close(fd)
    assert b"late output" not in Path(name).read_bytes()


def test_a_planted_link_is_not_written_through(tmp_path: Path) -> None:
    """A symbolic or hard link planted at the log's name: the file it
    leads to is left as it was; the log is a new file of its own."""
    (tmp_path / "logfiles").mkdir()
    record = _record(tmp_path)
    for letter, plant in (("A", os.symlink), ("B", os.link)):
        target = tmp_path / f"precious-{letter}"
        target.write_text("keep me\n")
        name, fd = _open(tmp_path, record, letter)
        os.close(fd)
        os.unlink(name)
        plant(target, name)
        name, fd = _open(tmp_path, record, letter)
        os.close(fd)
        assert target.read_text() == "keep me\n"
        assert not os.path.islink(name) and os.stat(name).st_nlink == 1
        assert Path(name).read_bytes().startswith(b"waitd: start")


def test_a_response_is_read_only_when_there_is_one_and_never_through_a_link(tmp_path: Path) -> None:
    log_name = str(tmp_path / "incoming.1.A")
    assert runner.read_response(log_name) is None
    target = tmp_path / "elsewhere"
    target.write_bytes(b'{"skip": "x"}')
    os.symlink(target, runner.response_name(log_name))
    assert runner.read_response(log_name) is None  # a planted link is not followed
    os.unlink(runner.response_name(log_name))
    Path(runner.response_name(log_name)).write_bytes(b"y" * (response.MOST + 5))
    assert runner.read_response(log_name) == b"y" * (response.MOST + 1)
    Path(runner.response_name(log_name)).write_bytes(b'{"skip": "x"}')
    assert runner.read_response(log_name) == b'{"skip": "x"}'


def test_a_runs_environment_is_its_records_with_its_own_values(tmp_path: Path) -> None:
    """A record's template makes each run's environment: waitd's, the
    record's WAITD_* and the run's own (issue 21: made once a record), in
    the documented order, a run never seeing an earlier run's values."""
    from waitd.decide.facts import FileFact
    from waitd.decide.outcome import Job
    from waitd.run.template import Template

    record = _record(tmp_path)
    base = {"PATH": "/bin", "HOME": "/root"}
    template = Template(str(tmp_path), record, "/bin/true", base)
    fact = FileFact(0, "a b.dat", 0, 0, 0)
    first = Job(("d", "t", "p"), "/bin/true", (fact,), (f"{tmp_path}/in/a b.dat",), group="g 1", attempt=3)
    env = template.environment(first, "/p/logfiles/incoming.1.A")
    assert list(env.items()) == [
        ("PATH", "/bin"),
        ("HOME", "/root"),
        ("WAITD_RECORD", "1"),
        ("WAITD_TELEM", "t"),
        ("WAITD_FILE", f"{tmp_path}/in/a b.dat"),
        ("WAITD_PASSDIR", str(tmp_path)),
        ("WAITD_LOG", "/p/logfiles/incoming.1.A"),
        ("WAITD_RESPONSE", "/p/logfiles/incoming.1.A.response"),
        ("WAITD_ATTEMPT", "3"),
        ("WAITD_GROUP", "g 1"),
    ]
    second = Job(("d", "t", "p"), "/bin/true", (fact,), ("/x/b.dat",))
    env = template.environment(second, "/p/logfiles/incoming.1.B")
    assert env["WAITD_ATTEMPT"] == "1" and "WAITD_GROUP" not in env and env["WAITD_FILE"] == "/x/b.dat"
    assert base == {"PATH": "/bin", "HOME": "/root"}  # waitd's own is left alone
    assert Template(str(tmp_path), record, "/bin/true", base).environment(second, "/p/logfiles/incoming.1.B") == env
    assert template.fits(record, "/bin/true", base) and not template.fits(record, "/bin/false", base)


def test_a_header_made_from_its_records_prefix_is_the_header(tmp_path: Path) -> None:
    prefix = handler_log.header_prefix(3, "gvar x", "/bin/h")
    for paths in (["/in/a b"], ["/in/a b", "/in/\udcff"]):
        assert handler_log.header_of(prefix, paths, 5.25) == handler_log.header(3, "gvar x", "/bin/h", paths, 5.25)
    line = handler_log.header_of(prefix, ["/in/a b"], 5.25)
    found = handler_log.parse_header(line.rstrip("\n"))
    assert found is not None and found.files == ("/in/a\\040b",) and found.record == "3"
