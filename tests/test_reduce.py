# SPDX-License-Identifier: MIT
"""`waitd reduce MESSAGE-FILE`: ISIS's PostProcessAdmin contract as a handler.

The message's parts and the overlay are unit tests; the command runs here
in-process (`run_here`: the same `main`, its output captured) on real
scripts, data and directories, once for each outcome; and once under the
real daemon, as a record's handler, with the archive from waitd.conf.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import read_jsonl, run_here, wait_for

from waitd.cli import reduce
from waitd.formats import reduction

# -- the message --------------------------------------------------------------------


def test_a_message_names_its_data_script_and_arguments():
    job = reduction.of({"file_path": "/d/x.nxs", "reduction_script": "/s/reduce.py",
                        "reduction_arguments": {"standard_vars": {"a": 1}}})  # fmt: skip
    assert job.data == "/d/x.nxs" and job.script == "/s/reduce.py" and not job.script_is_text
    assert job.arguments == {"standard_vars": {"a": 1}, "advanced_vars": {}}
    assert reduction.of({"data": "/d", "reduction_script": "def main(**k):\n  pass\n"}).script_is_text
    assert reduction.of({"data": "/d", "reduction_script": ""}).script is None
    for message, said in (
        ([], "not a JSON object"),
        ({"reduction_script": "/s"}, "no data"),
        ({"data": "/d", "reduction_script": 3}, "reduction_script is not a string"),
        ({"data": "/d", "reduction_arguments": [1]}, "reduction_arguments is not an object"),
        ({"data": "/d", "reduction_arguments": {"advanced_vars": "x"}}, "advanced_vars is not an object"),
    ):
        with pytest.raises(reduction.BadMessage, match=said):
            reduction.of(message)


def test_the_message_values_go_over_the_defaults_and_main_returns_directories():
    assert reduction.overlay({"a": 1, "b": 2}, {"b": 3, "c": 4}) == {"a": 1, "b": 3, "c": 4}
    assert reduction.overlay(None, {"c": 4}) == {"c": 4}
    assert (
        reduction.outputs(None) == []
        and reduction.outputs("/o") == ["/o"]
        and reduction.outputs(("/a", "/b"))
        == [
            "/a",
            "/b",
        ]
    )
    assert reduction.outputs([Path("/p")]) == ["/p"] and reduction.outputs(Path("/q")) == ["/q"]
    with pytest.raises(reduction.BadMessage, match="not a directory or a list"):
        reduction.outputs(3)


# -- the command --------------------------------------------------------------------

SCRIPT = """\
import os
import reduce_vars as web_var

def main(input_file, output_dir):
    mode = web_var.standard_vars["mode"]
    print("reducing", input_file, "in mode", mode)
    if mode == "fail":
        raise ValueError("no such mode")
    if mode == "later":
        error = RuntimeError("the archive is busy")
        error.retry_in = 30
        raise error
    if mode == "huge":
        error = RuntimeError("x" * 70000)
        error.retry_in = 5
        raise error
    if mode == "skip":
        error = RuntimeError("not in event mode")
        error.skip = True
        raise error
    with open(os.path.join(output_dir, "reduced.txt"), "w") as f:
        f.write(mode + " " + str(web_var.advanced_vars) + "\\n")
    out = os.path.join(os.path.dirname(input_file), "out")
    return [os.path.join(out, "a"), os.path.join(out, "b")]
"""


@pytest.fixture
def isis(tmp_path):
    """A script directory with reduce.py and reduce_vars.py, a data file."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "reduce.py").write_text(SCRIPT)
    (scripts / "reduce_vars.py").write_text('standard_vars = {"mode": "plain"}\nadvanced_vars = {"keep": 1}\n')
    data = tmp_path / "GEM00007.nxs"
    data.write_bytes(b"neutrons")
    saved = list(sys.path)
    yield tmp_path
    sys.path[:] = saved
    for name in ("reduce_vars", "reduce_script"):
        sys.modules.pop(name, None)


def run(root: Path, message: dict, *args: str) -> tuple[int, dict, str]:
    msg = root / "message.json"
    msg.write_text(json.dumps(message))
    answer = root / "response"
    answer.unlink(missing_ok=True)
    done = run_here(reduce.main, "waitd reduce", [*args, str(msg)], {"WAITD_RESPONSE": str(answer), "PATH": "/bin"})
    return done.returncode, json.loads(answer.read_text()), done.stdout + done.stderr


def message(root: Path, mode: str | None, script: str | None = None) -> dict:
    return {
        "data": str(root / "GEM00007.nxs"),
        "reduction_script": script if script is not None else str(root / "scripts" / "reduce.py"),
        "reduction_arguments": {"standard_vars": {"mode": mode}, "advanced_vars": {"extra": 2}} if mode else {},
        "rb_number": 1920007,
    }


def test_reduce_overlays_reduce_vars_copies_the_output_and_answers(isis):
    code, answer, said = run(isis, message(isis, "fast"), "--archive", str(isis / "archive"))
    assert code == 0, said
    for where in ("out/a", "out/b", "archive"):
        assert (isis / where / "reduced.txt").read_text() == "fast {'keep': 1, 'extra': 2}\n"
    assert answer["output_dirs"] == [str(isis / "out/a"), str(isis / "out/b"), str(isis / "archive")]
    assert answer["archive"] == str(isis / "archive") and "in mode fast" in answer["log"]
    assert "reducing " in said and "reduced; output in " in said


def test_reduce_runs_the_script_text_of_a_message_with_its_defaults(isis):
    text = (isis / "scripts" / "reduce.py").read_text().replace("import reduce_vars as web_var", "")
    text = "import types\nweb_var = types.SimpleNamespace(standard_vars={'mode': 'text'}, advanced_vars={})\n" + text
    code, answer, said = run(isis, message(isis, None, script=text))
    assert code == 0, said
    assert (isis / "out/a/reduced.txt").read_text().startswith("text ")
    assert answer["output_dirs"] == [str(isis / "out/a"), str(isis / "out/b")]


@pytest.mark.parametrize(
    ("mode", "code", "key", "value"),
    [
        ("fail", 1, "message", "ValueError: no such mode"),
        ("later", 75, "retry_in", 30.0),
        ("skip", 0, "skip", "not in event mode"),
        ("huge", 75, "retry_in", 5.0),  # a response cut to what waitd takes: what it acts on stays
    ],
)
def test_a_script_that_fails_asks_for_a_retry_or_skips(isis, mode, code, key, value):
    got, answer, said = run(isis, message(isis, mode))
    assert got == code and answer[key] == value
    assert "Traceback" in said and not (isis / "out").exists()
    if mode == "huge":
        assert answer["message"].endswith("xxx (the response was cut: over 65536 bytes)") and "log" not in answer
    else:
        assert "Traceback" in answer["log"] and "in mode " + mode in answer["log"]


def test_a_message_without_script_is_skipped_and_one_without_data_fails(isis):
    code, answer, said = run(isis, message(isis, "fast", script=""))
    assert code == 0 and "no reduction_script" in answer["skip"]
    code, answer, said = run(isis, {**message(isis, "fast"), "data": str(isis / "missing.nxs")})
    assert code == 1 and answer["message"] == f"{isis}/missing.nxs: no such data file"
    code, answer, said = run(isis, message(isis, "fast", script=str(isis / "nowhere.py")))
    assert code == 1 and answer["message"] == f"{isis}/nowhere.py: no such reduction script"
    code, answer, said = run(isis, {"reduction_script": "x"})
    assert code == 1 and "no data (or file_path)" in answer["message"] and "waitd reduce: " in said


def test_reduce_as_a_record_handler_under_the_daemon(station, isis):
    (station.passdir / "waitd.conf").write_text(
        f"[reduce]\narchive = {isis}/archive\n[sink log]\ntype = jsonl\npath = events.jsonl\n"
    )
    station.handler("reduce", f'exec "{sys.executable}" -m waitd reduce "$1"\n')
    station.table(f"isis {station.incoming} *.json {station.passdir}/reduce 0 -1 0")
    station.start()
    staging = isis / "message.json"
    staging.write_text(json.dumps(message(isis, "fast")))
    staging.rename(station.incoming / "GEM00007.json")

    def ended() -> list[dict]:
        return [e for e in read_jsonl(station.passdir / "events.jsonl") if e["type"] == "ended"]

    end = wait_for(lambda: ended() and ended()[-1], 20, "the reduction's end")
    log = (station.passdir / "logfiles" / "incoming.1.A").read_text()
    assert end["outcome"] == "ok", log
    assert end["response"]["output_dirs"][-1] == f"{isis}/archive"
    assert (isis / "archive" / "reduced.txt").exists() and "reducing " in log
    assert station.stop() == 0
