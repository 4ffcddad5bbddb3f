# SPDX-License-Identifier: MIT
"""`waitd reduce MESSAGE-FILE`: a handler that does what ISIS's PostProcessAdmin does.

Also installed as the command `waitd-reduce MESSAGE-FILE`, so that a
record's process-name can name it (a handler gets one argument: the file).

It reads the message (a JSON object, `formats.reduction`), loads the
reduction script as a module with importlib (from its path, or from the
message's text written to a file in a private temporary directory: never
exec of a message string), overlays the script's `reduce_vars`
(`standard_vars`, `advanced_vars`, from a reduce_vars.py beside the
script, or the module the script imported as `web_var`) with the
message's `reduction_arguments`, calls `main(input_file=DATA,
output_dir=TMP)`, copies TMP into each directory `main` returns and into
the archive (`--archive DIR`, or `archive =` of waitd.conf's `[reduce]`),
and writes the response (`formats.reduction.response`) to
WAITD_RESPONSE when it is set.

Exit status, as waitd counts it (incoming(5)):

    0   reduced; or skipped: no reduction_script, or the script raised an
        exception with a true `skip` attribute (response `skip`)
    1   the message cannot be reduced, or the script failed (its
        traceback on stderr: the run's log)
    2   bad usage
    75  the script raised an exception with a `retry_in` attribute
        (seconds): a temporary failure, retried after that long

This runs in the handler's own process (a run of waitd's), never in the
daemon.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
import traceback
import types
from collections.abc import Sequence
from typing import Any

from waitd.config import conf
from waitd.config.passdir import conf_path
from waitd.formats import reduction
from waitd.formats.response import MOST, TAIL

EX_TEMPFAIL = 75


class _Tee(io.TextIOBase):
    """A stream that writes through, keeping the last TAIL bytes."""

    def __init__(self, through: Any, kept: bytearray) -> None:
        self.through = through
        self.kept = kept

    def write(self, text: str) -> int:
        self.through.write(text)
        self.kept.extend(text.encode("utf-8", "replace"))
        del self.kept[: max(0, len(self.kept) - TAIL)]
        return len(text)

    def flush(self) -> None:
        self.through.flush()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="waitd reduce", description="Run an ISIS reduction script for one message.")
    p.add_argument("message", metavar="MESSAGE-FILE", help="the message: a JSON object (a queue file)")
    p.add_argument("--archive", metavar="DIR", help="copy the output here too (default: [reduce] archive =)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`waitd reduce ARGS`, or the `waitd-reduce` command (argv None: its own)."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    answer = _Answer(os.environ.get("WAITD_RESPONSE"))
    try:
        with open(args.message, "rb") as f:
            message = json.loads(f.read())
        job = reduction.of(message)
        archive = args.archive or _archive()
    except (OSError, ValueError) as exc:
        return answer.failed(f"{args.message}: {getattr(exc, 'strerror', None) or exc}")
    if job.script is None:
        return answer.skipped(f"{args.message}: no reduction_script: nothing to run")
    if not os.path.exists(job.data):
        return answer.failed(f"{job.data}: no such data file")
    if not job.script_is_text and not os.path.isfile(job.script):
        return answer.failed(f"{job.script}: no such reduction script")
    with tempfile.TemporaryDirectory(prefix="waitd-reduce-") as tmp:
        out = os.path.join(tmp, "output")
        os.mkdir(out)
        kept = bytearray()
        try:
            with contextlib.redirect_stdout(_Tee(sys.stdout, kept)), contextlib.redirect_stderr(_Tee(sys.stderr, kept)):
                module = _load(job, tmp)
                returned = module.main(input_file=job.data, output_dir=out)
            dirs = reduction.outputs(returned)
            copied = [_copy(out, d) for d in [*dirs, *([archive] if archive else [])]]
        except Exception as exc:  # the script's: anything it raises is its failure
            traceback.print_exc()
            kept.extend(traceback.format_exc().encode("utf-8", "replace"))
            return answer.raised(exc, bytes(kept))
        answer.write(reduction.response(copied, archive, bytes(kept)))
    print(f"waitd reduce: {job.data}: reduced; output in {', '.join(copied) or '(nowhere)'}")
    return 0


class _Answer:
    """The response (if WAITD_RESPONSE is set) and the exit status."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def write(self, doc: dict[str, Any]) -> None:
        if not self.path:
            return
        data = json.dumps(doc, default=str).encode()
        if len(data) > MOST:  # keep it within what waitd takes: what it acts on stays
            kept: dict[str, Any] = {k: doc[k] for k in ("skip", "retry_in") if k in doc}
            kept["message"] = f"{str(doc.get('message') or '')[:4096]} (the response was cut: over {MOST} bytes)"
            data = json.dumps(kept, default=str).encode()
        with open(self.path, "wb") as f:
            f.write(data)

    def failed(self, why: str) -> int:
        print(f"waitd reduce: {why}", file=sys.stderr)
        self.write(reduction.response([], None, b"", message=why))
        return 1

    def skipped(self, why: str) -> int:
        print(f"waitd reduce: skipped: {why}")
        self.write(reduction.response([], None, b"", skip=why))
        return 0

    def raised(self, exc: Exception, log: bytes) -> int:
        what = f"{type(exc).__name__}: {exc}"
        if getattr(exc, "skip", False):
            self.write(reduction.response([], None, log, skip=str(exc) or what))
            return 0
        retry_in = getattr(exc, "retry_in", None)
        if isinstance(retry_in, int | float) and not isinstance(retry_in, bool):
            self.write(reduction.response([], None, log, message=what, retry_in=float(retry_in)))
            return EX_TEMPFAIL
        self.write(reduction.response([], None, log, message=what))
        return 1


def _archive() -> str | None:
    """`archive =` of [reduce] in the PASSDIR's waitd.conf, if any."""
    passdir = os.environ.get("WAITD_PASSDIR")
    if not passdir:
        return None
    found, errors = conf.read(conf_path(passdir))
    if errors:
        raise ValueError(f"{errors[0]}")
    return found.reduce.archive if found.reduce is not None else None


def _load(job: reduction.Reduction, tmp: str) -> types.ModuleType:
    """The reduction script as a module, its reduce_vars overlaid."""
    assert job.script is not None
    if job.script_is_text:
        path = os.path.join(tmp, "reduce.py")
        with open(path, "w") as f:
            f.write(job.script)
    else:
        path = job.script
    directory = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, directory)
    beside = os.path.join(directory, "reduce_vars.py")
    if os.path.exists(beside):
        web_var = _module("reduce_vars", beside)  # the script's `import reduce_vars` finds this one
        _overlay(web_var, job)
    module = _module("reduce_script", path)
    imported = getattr(module, "web_var", None)
    if isinstance(imported, types.ModuleType):
        _overlay(imported, job)
    if not callable(getattr(module, "main", None)):
        raise reduction.BadMessage(f"{job.script if not job.script_is_text else 'the script'}: no main()")
    return module


def _module(name: str, path: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: cannot load it as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _overlay(web_var: types.ModuleType, job: reduction.Reduction) -> None:
    for name in reduction.VARS:
        given = job.arguments.get(name) or {}
        setattr(web_var, name, reduction.overlay(getattr(web_var, name, None), given))


def _copy(out: str, directory: str) -> str:
    """Copy the output into a directory (made if need be); its path."""
    shutil.copytree(out, directory, dirs_exist_ok=True)
    return directory
