"""Dynamic evaluation (`chargen eval --dynamic`, model.evaluate(dynamic=True)) and adapting to a
document before sampling (`chargen sample --adapt`): a copy of the weights learns from the
text as it is read; the run itself never changes."""

import hashlib
from pathlib import Path

import pytest
import torch
from conftest import make_text

from chargen import api
from chargen.cli import main
from chargen.config import AdaptConfig
from chargen.errors import ConfigError


def fingerprint(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(directory).rglob("*")) if p.is_file()}


def repetitive_text() -> str:
    """A passage the run never saw (its characters are the corpus's), read several times: what
    was read a moment ago predicts what comes next."""
    return make_text(300, seed=41) * 6


def weights(model) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.net.state_dict().items()}


def test_dynamic_evaluation_lowers_the_loss_of_a_repetitive_text_and_changes_nothing(trained_run):
    before = fingerprint(trained_run)
    model = api.load(str(trained_run), device="cpu")
    held = weights(model)
    text = repetitive_text()
    static = model.evaluate(text)
    dynamic = model.evaluate(text, dynamic=True)
    assert dynamic.tokens == static.tokens and dynamic.characters == static.characters
    assert dynamic.nats < static.nats - 0.05
    assert fingerprint(trained_run) == before  # no file of the run changed
    assert all(torch.equal(value, held[name]) for name, value in model.net.state_dict().items())
    assert model.evaluate(text).nats == static.nats  # the loaded model did not move either


def test_without_updates_dynamic_evaluation_is_the_text_read_as_one_stream(trained_run):
    model = api.load(str(trained_run), device="cpu")
    text = make_text(500, seed=3)
    ids = torch.as_tensor(model.tokenizer.encode(text), dtype=torch.long)
    with torch.no_grad():
        logits, _ = model.net(ids[None, :-1])
    one_stream = float(torch.nn.functional.cross_entropy(logits[0], ids[1:]))
    result = model.evaluate(text, dynamic=True, adapt_lr=0.0, adapt_decay=0.0)
    assert result.nats == pytest.approx(one_stream, abs=1e-4)


def test_a_larger_step_adapts_more_and_decay_pulls_back(trained_run):
    model = api.load(str(trained_run), device="cpu")
    text = repetitive_text()
    loss = {lr: model.evaluate(text, dynamic=True, adapt_lr=lr, adapt_decay=0.0).nats
            for lr in (0.0, 0.01, 0.1)}
    assert loss[0.1] < loss[0.01] < loss[0.0]
    undone = model.evaluate(text, dynamic=True, adapt_lr=0.1, adapt_decay=1.0).nats
    assert undone == pytest.approx(loss[0.0], abs=1e-4)  # decay 1: each update undone at once


def test_an_adapted_copy_writes_like_the_document_and_changes_nothing_on_disk(trained_run):
    before = fingerprint(trained_run)
    model = api.load(str(trained_run), device="cpu")
    document = make_text(400, seed=77)
    adapted = model.adapt(document * 4, adapt_lr=0.1)
    assert adapted.evaluate(document).nats < model.evaluate(document).nats
    assert adapted is not model and adapted.net is not model.net
    assert len(adapted.sample("The", length=30, seed=1)[0]) > 0
    assert fingerprint(trained_run) == before


def test_cli_prints_static_and_dynamic_side_by_side(trained_run, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text(repetitive_text(), encoding="utf-8")
    before = fingerprint(trained_run)
    assert main(["eval", str(trained_run), str(text), "--dynamic"]) == 0
    lines = capsys.readouterr().out.splitlines()
    static, dynamic = (float(line.split()[2]) for line in lines)
    assert lines[0].startswith("static:") and lines[1].startswith("dynamic:")
    assert dynamic < static
    assert fingerprint(trained_run) == before


def test_cli_samples_after_adapting(trained_run, tmp_path, capsys):
    document = tmp_path / "doc.txt"
    document.write_text(make_text(400, seed=5), encoding="utf-8")
    before = fingerprint(trained_run)
    assert main(["sample", str(trained_run), "--adapt", str(document), "--prime", "The",
                 "--length", "40", "--seed", "2", "--precision", "fp32"]) == 0
    assert capsys.readouterr().out.startswith("The")
    assert fingerprint(trained_run) == before


@pytest.mark.parametrize("argv, message", [
    (["eval", "RUN", "TEXT", "--adapt-lr", "0.1"], "apply only with --dynamic"),
    (["sample", "RUN", "--adapt-decay", "0.1"], "apply only with --adapt FILE"),
    (["eval", "RUN", "TEXT", "--dynamic", "--adapt-decay", "2"], "--adapt-decay must be from"),
    (["eval", "RUN", "TEXT", "--dynamic", "--adapt-segment", "0"], "--adapt-segment must be"),
    (["eval", "RUN", "TEXT", "--dynamic", "--adapt-lr", "1e9"], "--adapt-lr must be from"),
])
def test_bad_adapt_settings_are_one_line(trained_run, tmp_path, capsys, argv, message):
    text = tmp_path / "text.txt"
    text.write_text(make_text(300), encoding="utf-8")
    argv = [str(trained_run) if a == "RUN" else str(text) if a == "TEXT" else a for a in argv]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_document_runs_refuse_adapting_in_one_line(line_run):
    model = api.load(str(line_run), device="cpu")
    with pytest.raises(ConfigError, match="one stream"):
        model.evaluate("hello world\n" * 3, dynamic=True)
    with pytest.raises(ConfigError, match="one stream"):
        model.adapt("hello world\n")


def test_settings_apply_only_where_they_can(trained_run):
    model = api.load(str(trained_run), device="cpu")
    with pytest.raises(ConfigError, match="apply only with dynamic=True"):
        model.evaluate("some text", adapt_lr=0.1)
    with pytest.raises(ConfigError, match="unknown adapt setting"):
        model.adapt("some text", adapt_rate=0.1)
    assert AdaptConfig().validate() == AdaptConfig()
