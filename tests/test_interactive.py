"""chargen sample --interactive: the prompt loop, in process and in a real pseudo-terminal."""

import io
import os
import sys

import pytest

from chargen import api
from chargen.config import SampleConfig
from chargen.errors import ChargenError
from chargen.interactive import Session


def _session(trained_run, **settings):
    out, err = io.StringIO(), io.StringIO()
    model = api.load(str(trained_run), device="cpu")
    config = SampleConfig(**{"length": 20, "seed": 1, **settings}).validate()
    return Session(model, config, out=out, err=err), out, err


def _feed(lines):
    pending = list(lines)

    def read_line(prompt):
        if not pending:
            raise EOFError
        return pending.pop(0)

    return read_line


def test_lines_are_continued_and_commands_change_the_settings(trained_run):
    session, out, err = _session(trained_run)
    status = session.run(read_line=_feed(["The quick", ":temp 0.5", ":length 5", "The quick",
                                          ":settings"]))
    assert status == 0
    first, second = out.getvalue().splitlines()[:2]
    assert first.startswith("The quick") and len(first) == len("The quick") + 20
    assert second.startswith("The quick") and len(second) == len("The quick") + 5
    assert session.settings.temperature == 0.5
    assert "temperature = 0.5" in err.getvalue() and "length=5" in err.getvalue()


def test_bad_commands_and_unknown_characters_are_one_line_messages(trained_run):
    session, out, err = _session(trained_run)
    session.run(read_line=_feed([":temp hot", ":temp -1", ":bogus", "snow \u2603", ":unknown skip",
                                 "snow \u2603", ":quit", "never read"]))
    messages = err.getvalue().splitlines()[1:]  # after the greeting
    assert messages[0].startswith(":temp needs a value")
    assert "--temperature must be from 0.001 to 1000" in messages[1]
    assert messages[2] == "unknown command :bogus; :help lists the commands"
    assert "never saw" in messages[3] and ":unknown skip" in messages[3]
    assert messages[4] == "unknown = skip"
    assert out.getvalue().startswith("snow \u2603")  # generated once skipping was chosen
    assert session.settings.temperature == 1.0


def test_several_samples_are_refused(trained_run):
    with pytest.raises(ChargenError, match="--num"):
        _session(trained_run, num=2)


def test_a_prime_starting_with_a_colon_is_typed_with_two(trained_run):
    session, out, _ = _session(trained_run)
    session.run(read_line=_feed([":unknown skip", "::quick"]))  # ':' is not in the tiny corpus
    assert out.getvalue().startswith(":quick")


def test_in_a_pseudo_terminal(trained_run):
    pexpect = pytest.importorskip("pexpect", reason="pexpect is not installed (pip install pexpect)")
    src = os.path.join(os.path.dirname(__file__), os.pardir, "src")
    env = {**os.environ, "PYTHONPATH": os.path.abspath(src) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = pexpect.spawn(sys.executable, ["-m", "chargen", "sample", str(trained_run), "--interactive",
                                           "--seed", "3", "--length", "40", "--device", "cpu"],
                          env=env, encoding="utf-8", timeout=120)
    try:
        child.expect_exact("> ")
        child.sendline("The quick")
        child.expect_exact("The quick\r\nThe quick")  # the typed line, then prime + continuation
        child.expect_exact("\r\n> ")
        assert len(child.before.replace("\r\n", "\n")) == 40
        child.sendline(":temp 0.5")
        child.expect_exact("temperature = 0.5")
        child.expect_exact("> ")
        child.sendline(":length 100000000")
        child.expect_exact("> ")
        child.sendline("Lazy")
        child.expect_exact("Lazy\r\nLazy")
        child.expect(r"[\s\S]{20}")  # streaming has begun: stop it
        child.sendintr()
        child.expect_exact("[stopped]")
        child.expect_exact("> ")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_every_sampling_control_can_be_set_in_the_session(trained_run):
    session, out, err = _session(trained_run)
    session.run(read_line=_feed([":penalty 1.3", ":stop e", "The quick", ":stop none",
                                 ":beam 3", "The quick", ":beam 0", ":stop \\n"]))
    first, second = out.getvalue().splitlines()[:2]
    expected = session.model.sample("The quick", length=20, seed=1, repetition_penalty=1.3,
                                    stop=("e",))[0]
    assert first == "The quick" + expected and "e" not in expected
    beam = session.model.sample("The quick", length=20, seed=1, repetition_penalty=1.3, beam=3)
    assert second == "The quick" + beam[0]
    assert session.settings.stop == ("\n",) and session.settings.repetition_penalty == 1.3
    assert "beam = 3" in err.getvalue()
