# SPDX-License-Identifier: MIT
"""A file of lines, read a whole line at a time.

`whole_lines` reads a file from a buffered reader, a chunk of bytes a
read, which finds each newline with memchr (a split of a chunk at b"\\n"
steps through it a byte at a time: issue 21, a history of a million
lines, 0.08 s less).  It gives whole lines only, each with its newline: a
torn last line (its writer stopped in the middle of it) is found first,
back from the file's end, and given apart, with the bytes the whole lines
before it take.

This module reads and raises what os.pread and the reader raise; what
the lines say is its caller's (`replay`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator


def whole_lines(fd: int, chunk: int) -> tuple[io.BufferedIOBase, Iterable[bytes], int, bytes | None]:
    """The file open on `fd` as a reader (closing it closes `fd`), its
    whole lines, the bytes they take, and its torn last line (None: none)."""
    reader = io.BufferedReader(io.FileIO(fd, "rb", closefd=True), buffer_size=chunk)
    try:
        size = os.fstat(fd).st_size
        whole = size
        while whole > 0:
            block = os.pread(fd, min(chunk, whole), whole - min(chunk, whole))
            newline = block.rfind(b"\n")
            if newline >= 0:
                whole -= len(block) - newline - 1
                break
            whole -= len(block)
        torn = os.pread(fd, size - whole, whole) if whole < size else None
    except BaseException:
        reader.close()  # `fd` with it: the caller has no reader to close
        raise
    return reader, reader if torn is None else _upto(reader, whole), whole, torn


def _upto(lines: Iterable[bytes], whole: int) -> Iterator[bytes]:
    """The lines within the first `whole` bytes."""
    at = 0
    for raw in lines:
        at += len(raw)
        if at > whole:
            return
        yield raw
