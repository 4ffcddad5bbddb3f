# SPDX-License-Identifier: MIT
"""A run's log file as waitd writes it: its header, then the footer on a
line of its own, read back from a real file."""

from __future__ import annotations

import os
from pathlib import Path

from waitd.config import table
from waitd.formats import handler_log
from waitd.run import runner


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
        name, fd, head = runner.open_log(str(tmp_path), record, "/bin/true", ["/x/f.dat"], letter, 1.0)
        assert head == os.fstat(fd).st_size
        os.write(fd, output)
        ends = runner._ends_line(fd, head)
        assert ends is (not output or output.endswith(b"\n"))
        runner._write(fd, ("" if ends else "\n") + handler_log.footer(1, exit=0, took=0.0, at=2.0))
        os.close(fd)
        lines = Path(name).read_bytes().split(b"\n")
        assert lines[0].startswith(b"waitd: start") and lines[-2].startswith(b"waitd: end"), lines
