"""Document mode: units as separate sequences with [start] and [end] markers."""

import json

import numpy as np
import pytest
import torch
from conftest import LINES, cli_without_torch, train_lines
from safetensors.torch import load_file

from chargen import api
from chargen.checkpoint import LAST, RunDir
from chargen.cli import main
from chargen.config import DataConfig
from chargen.documents import (
    IGNORE,
    UNITS,
    DocumentBatches,
    Documents,
    MarkedTokenizer,
    Separators,
    documents_of,
    gather_pieces,
    load_tokenizer,
    piece_plan,
    unit_bounds,
)
from chargen.errors import ConfigError
from chargen.finetune import initial_weights, load_base
from chargen.tokenizer import ByteTokenizer, CharTokenizer
from chargen.words import WordTokenizer

TEXT = ("\n\nHello there. How are you?\nFine!\n\n\n\nNew para... ends here\nand goes on.\n"
        "Done?  Yes.\n\n")
SPLITS = {
    "line": ["Hello there. How are you?", "Fine!", "New para... ends here", "and goes on.",
             "Done?  Yes."],
    "sentence": ["Hello there.", "How are you?", "Fine!", "New para...", "ends here\nand goes on.",
                 "Done?", "Yes."],
    "paragraph": ["Hello there. How are you?\nFine!",
                  "New para... ends here\nand goes on.\nDone?  Yes."],
}
def _fit(kind: str, text: str):
    return {"char": CharTokenizer.fit, "byte": ByteTokenizer.fit, "word": WordTokenizer.fit}[kind](text)


@pytest.mark.parametrize("kind", ["char", "byte", "word"])
@pytest.mark.parametrize("unit", ["line", "sentence", "paragraph"])
def test_units_are_split_without_their_separators_and_empty_ones_skipped(kind, unit):
    tokenizer = _fit(kind, TEXT)
    ids = tokenizer.encode(TEXT)
    starts, ends = unit_bounds(ids, Separators.of(tokenizer), unit)
    assert [tokenizer.decode(ids[a:b]) for a, b in zip(starts, ends)] == SPLITS[unit]


@pytest.mark.parametrize("kind", ["char", "word"])
def test_crlf_text_splits_as_normalised_text_does(kind):
    text = "a b\r\nc.  d\r\n\r\ne\r\n"
    tokenizer = _fit(kind, text)
    ids = tokenizer.encode(text)
    split = {unit: [tokenizer.decode(ids[a:b]) for a, b in
                    zip(*unit_bounds(ids, Separators.of(tokenizer), unit))] for unit in UNITS}
    assert split == {"line": ["a b", "c.  d", "e"], "sentence": ["a b\r\nc.", "d", "e"],
                     "paragraph": ["a b\r\nc.  d", "e"]}


def test_a_text_without_separators_is_one_unit_and_an_empty_one_has_none():
    tokenizer = CharTokenizer.fit("abc\n")
    assert [len(part) for part in unit_bounds(tokenizer.encode("abc"), Separators.of(tokenizer),
                                              "line")] == [1, 1]
    starts, _ = unit_bounds(tokenizer.encode("\n\n\n"), Separators.of(tokenizer), "line")
    assert len(starts) == 0


def _docs(lines, seq_len=None):
    tokenizer = MarkedTokenizer(CharTokenizer.fit("\n".join(lines)))
    ids = tokenizer.encode("\n".join(lines) + "\n")
    return tokenizer, documents_of(ids, tokenizer, "line")


def test_pieces_read_start_predict_end_and_pad_with_ignored_targets():
    tokenizer, docs = _docs(["ab", "abcdefghij"])
    units, offsets = piece_plan(docs, seq_len=4)
    assert units.tolist() == [0, 1, 1, 1] and offsets.tolist() == [0, 0, 4, 8]
    x, y = gather_pieces(docs, units, offsets, seq_len=4)
    assert x.shape == y.shape == (4, 4)
    start, end = tokenizer.start_id, tokenizer.end_id
    assert x[0].tolist() == [start, *tokenizer.encode("ab"), end]  # the padding input: [end]
    assert y[0].tolist() == [*tokenizer.encode("ab"), end, IGNORE]
    # the long unit: targets of its pieces are the unit and [end], in order, each once
    targets = torch.cat([row[row != IGNORE] for row in y[1:]]).tolist()
    assert targets == [*tokenizer.encode("abcdefghij"), end]
    assert x[1, 0] == start and (x[2:] != start).all() and (y[1:3] != end).all()
    assert x[3].tolist()[:3] == tokenizer.encode("hij").tolist()  # the last piece: 3 inputs
    assert y[3].tolist() == [*tokenizer.encode("ij"), end, IGNORE]


def test_a_batch_is_as_wide_as_its_longest_row():
    _, docs = _docs(["a", "bb", "ccc"])
    x, y = gather_pieces(docs, np.array([0, 1]), np.array([0, 0]), seq_len=50)
    assert x.shape == (2, 3) and (y[0, 2:] == IGNORE).all()


def test_batches_are_a_pure_function_of_seed_and_step():
    _, docs = _docs([f"line number {i}" * (1 + i % 4) for i in range(50)])
    walked = DocumentBatches(docs, batch_size=8, seq_len=16, seed=3)
    seen = [walked.batch(step) for step in range(3 * walked.steps_per_epoch)]
    fresh = DocumentBatches(docs, batch_size=8, seq_len=16, seed=3)
    for step in (2 * walked.steps_per_epoch + 1, 0, walked.steps_per_epoch + 2):
        assert all(torch.equal(a, b) for a, b in zip(fresh.batch(step), seen[step]))
    other = DocumentBatches(docs, batch_size=8, seq_len=16, seed=4)
    assert not all(torch.equal(other.batch(s)[0], seen[s][0]) for s in range(3))


def test_every_piece_is_seen_once_an_epoch():
    tokenizer, docs = _docs([f"unit {i}" for i in range(21)])
    batches = DocumentBatches(docs, batch_size=4, seq_len=32, seed=0)
    rows = [tuple(row[row != IGNORE].tolist()) for s in range(batches.steps_per_epoch)
            for row in batches.batch(s)[1]]
    assert batches.steps_per_epoch == 6 and len(rows) == 24  # the last batch refilled
    assert set(rows) == {(*tokenizer.encode(f"unit {i}").tolist(), tokenizer.end_id)
                         for i in range(21)}


def test_markers_are_appended_recorded_and_old_tokenizers_load_unchanged():
    base = CharTokenizer.fit("abc")
    marked = MarkedTokenizer(base)
    assert (marked.start_id, marked.end_id, marked.vocab_size) == (4, 5, 6)
    assert marked.start_id in marked.never_sample and marked.end_id not in marked.never_sample
    assert marked.decode([4, 1, 2, 5]) == "ab"
    assert 0 in MarkedTokenizer(CharTokenizer.fit("a\nb")).never_sample  # unknown
    assert 1 in MarkedTokenizer(CharTokenizer.fit("a\nb")).never_sample  # "\n" in line runs
    assert 1 not in MarkedTokenizer(CharTokenizer.fit("a\nb"), "paragraph").never_sample
    loaded = load_tokenizer(json.loads(json.dumps(marked.to_dict())))
    assert isinstance(loaded, MarkedTokenizer) and loaded.vocab_size == 6
    assert loaded.document_unit == "line"
    plain = load_tokenizer(base.to_dict())
    assert not isinstance(plain, MarkedTokenizer) and plain.vocab_size == 4


def test_document_unit_needs_document_batching():
    with pytest.raises(ConfigError, match="--batching documents"):
        DataConfig(document_unit="sentence").validate()


def test_throughput_counts_the_positions_a_document_batch_runs(tmp_path, monkeypatch):
    from chargen.trainer import Trainer

    original, counted, widths = Trainer._train_step, [], []

    def step(self, number):
        widths.append(self.batches.batch(number)[0][self.rows].numel())
        loss, positions = original(self, number)
        counted.append(positions)
        return loss, positions

    monkeypatch.setattr(Trainer, "_train_step", step)
    train_lines(tmp_path, max_steps=6, seq_len=64, batch_size=4, val_fraction=0.0,
                 keep="train-loss")
    assert counted == widths and len(counted) == 6
    assert max(counted) < 4 * 64  # the lines are shorter than seq_len: not batch x seq_len


def test_a_tiny_model_generates_whole_training_lines_and_stops(line_run):
    model = api.load(str(line_run))
    assert model.document_unit == "line"
    assert model.sample(greedy=True, length=200)[0] in LINES
    for prime, line in (("g", "good morning"), ("see", "see you soon")):
        assert prime + model.sample(prime, greedy=True, length=200)[0] == line
    texts = model.sample(num=8, length=200, seed=1, temperature=0.5)
    assert all(text and "\n" not in text and "[" not in text for text in texts)
    assert all(len(text) < 40 for text in texts)  # ended at [end], well before --length


def test_validation_scores_every_unit_and_its_end(line_run):
    metrics = RunDir(line_run).read_metrics()
    assert any("val_loss" in r for r in metrics)
    model = api.load(str(line_run))
    result = model.evaluate("hello world\ngood morning\n")
    assert result.tokens == len("hello world") + 1 + len("good morning") + 1


def test_samples_during_training_are_whole_units(line_run):
    samples = RunDir(line_run).read_jsonl("samples.jsonl")
    assert samples and all(s["prime"] == "" for s in samples)
    assert samples[-1]["text"] in LINES  # the last one, at step 120: learnt by then


def test_beam_search_finds_whole_units(line_run):
    model = api.load(str(line_run))
    assert model.sample("g", beam=3, length=100) == ["ood morning"]
    assert sorted(model.sample(beam=3, num=3, length=100)) == sorted(LINES)


def test_an_onnx_export_samples_whole_units_as_the_run_does(line_run, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from chargen.export import export_run
    from chargen.onnx_sampler import load_export

    model, exported = api.load(str(line_run)), load_export(export_run(str(line_run), str(tmp_path / "x")))
    assert exported.document_unit == "line"
    for prime in (None, "g", "see"):
        expected = model.sample(prime, greedy=True, length=200, precision="fp32")
        assert exported.sample(prime, greedy=True, length=200) == expected
    texts = exported.sample(num=8, length=200, seed=1, temperature=0.5)
    assert all(text and "\n" not in text and len(text) < 40 for text in texts)  # ended at [end]
    out = cli_without_torch(["sample", str(tmp_path / "x"), "--greedy", "--num", "2"])
    assert out.splitlines() == model.sample(greedy=True, num=2, length=500)


def test_fine_tuning_a_document_run_keeps_its_markers(line_run, tmp_path):
    corpus = tmp_path / "more.txt"
    corpus.write_text("hello world\nZebra crossing\n" * 20)
    tuned = api.train(str(corpus), str(tmp_path / "tuned"), init_from=str(line_run), quiet=True,
                      extend_vocab=True, max_steps=2)
    base, tokenizer = load_base(str(line_run)), RunDir(tuned.run_dir).read_tokenizer()
    assert "Z" in tokenizer.chars and tokenizer.end_id > base.tokenizer.end_id
    weights = initial_weights(base, tokenizer)
    for name in ("embedding.weight", "head.weight", "head.bias"):
        for marker in ("start_id", "end_id"):
            new, old = getattr(tokenizer, marker), getattr(base.tokenizer, marker)
            assert torch.equal(weights[name][new], base.weights[name][old]), (name, marker)
    model = api.load(str(tuned.run_dir))
    assert model.document_unit == "line"
    assert all("\n" not in text for text in model.sample(num=4, length=60, seed=0))
    with pytest.raises(ConfigError, match="--batching"):
        api.train(str(corpus), str(tmp_path / "streamed"), init_from=str(line_run), quiet=True,
                  batching="stream", max_steps=1)
    assert not (tmp_path / "streamed").exists()


def test_resume_is_exact(tmp_path):
    settings = {"schedule": "constant", "warmup_steps": 5, "max_steps": 16, "eval_every": 8}
    train_lines(tmp_path, "straight", **settings)
    train_lines(tmp_path, "split", **{**settings, "max_steps": 8})
    api.train(resume=str(tmp_path / "split"), max_steps=16, quiet=True)
    a, b = (load_file(str(tmp_path / name / LAST)) for name in ("straight", "split"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", ["byte", "word"])
def test_byte_and_word_runs_train_and_sample_whole_units(tmp_path, kind):
    run = train_lines(tmp_path, tokenizer=kind, max_steps=10).run_dir
    texts = api.load(str(run)).sample(num=3, length=30, seed=0)
    assert len(texts) == 3 and all("\n" not in text for text in texts)


def test_cli_trains_and_prints_one_unit_per_line(tmp_path, capsys):
    corpus = tmp_path / "names.txt"
    corpus.write_text("\n".join(LINES * 20) + "\n")
    run = tmp_path / "run"
    assert main(["train", str(corpus), "--out", str(run), "--batching", "documents",
                 "--document-unit", "line", "--no-auto", "--max-steps", "6", "--hidden-size", "16",
                 "--num-layers", "1", "--batch-size", "8", "--device", "cpu", "-q"]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--num", "5", "--length", "15", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 5 and out.endswith("\n")
    assert main(["train", str(corpus), "--document-unit", "paragraph"]) == 2
    assert "--batching documents" in capsys.readouterr().err


def test_documents_length_counts_unit_tokens():
    docs = Documents(np.arange(10), np.array([0, 5]), np.array([3, 9]), 10, 11)
    assert len(docs) == 7 and docs.units == 2 and len(docs.subset(slice(1, None))) == 4
