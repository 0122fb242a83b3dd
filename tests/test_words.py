import json

import numpy as np
import pytest
from conftest import make_text, tiny_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from chargen import api
from chargen.cli import main
from chargen.config import DataConfig
from chargen.errors import ConfigError, TokenizerError
from chargen.tokenizer import save_tokenizer_json, scan, tokenizer_from_dict
from chargen.words import WordTokenizer, choose_vocabulary, split_stream, split_words


def test_split_words_keeps_apostrophes_and_splits_punctuation_and_cjk():
    text = "Don't stop—it's 3 o'clock!\n\n  曹操曰：「吾」 naïve l’homme"
    assert split_words(text) == [
        "Don't", " ", "stop", "—", "it's", " ", "3", " ", "o'clock", "!", "\n\n  ",
        "曹", "操", "曰", "：", "「", "吾", "」", " ", "naïve", " ", "l’homme"]


def test_a_trailing_or_leading_apostrophe_is_punctuation():
    assert split_words("'tis the dogs' bone") == ["'", "tis", " ", "the", " ", "dogs", "'", " ",
                                                  "bone"]


@settings(max_examples=300, deadline=None)
@given(st.text(), st.data())
def test_split_stream_equals_splitting_the_whole_text(text, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    streamed = [token for tokens in split_stream(pieces) for token in tokens]
    assert streamed == split_words(text)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_word_round_trip_when_every_word_is_known(text):
    tok = WordTokenizer.fit(text)
    ids = tok.encode(text)
    assert tok.unknown_id not in ids.tolist()
    assert tok.decode(ids) == text
    assert tok.unknown_chars(text) == []


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1), st.text())
def test_word_tokenizer_survives_json_and_maps_unknown_words_to_unk(fit_text, other):
    tok = WordTokenizer.fit(fit_text)
    again = tokenizer_from_dict(json.loads(save_tokenizer_json(tok)))
    assert np.array_equal(again.encode(other), tok.encode(other))
    for token, token_id in zip(split_words(other), tok.encode(other).tolist()):
        assert (token_id == tok.unknown_id) == (token not in set(split_words(fit_text)))


def test_vocabulary_by_frequency_then_text_with_min_count_and_max_vocab():
    counts = {"b": 3, "a": 3, "c": 5, "d": 1}
    assert choose_vocabulary(counts) == ["c", "a", "b", "d"]
    assert choose_vocabulary(counts, min_count=2) == ["c", "a", "b"]
    assert choose_vocabulary(counts, max_vocab=2) == ["c", "a"]


def test_rare_words_become_unknown_and_are_never_sampled():
    tok = WordTokenizer.fit("the cat the dog the cat", min_count=2)
    assert tok.words == [" ", "the", "cat"]
    assert tok.decode(tok.encode("the dog")) == "the [UNK]"
    assert tok.unknown_chars("the dog and cat") == ["and", "dog"]
    assert tok.never_sample == [tok.unknown_id]


def test_scan_counts_word_tokens_across_chunks():
    chunks = ["the ca", "t sat\n", "\non the mat"]
    tok, stats = scan("word", iter(chunks))
    assert stats.tokens == len(split_words("".join(chunks))) == 11
    assert stats.characters == len("".join(chunks))
    assert stats.distinct == len(set("".join(chunks)))
    ids = np.concatenate(list(tok.encode_chunks(iter(chunks))))
    assert tok.decode(ids) == "".join(chunks)


def test_malformed_word_json_is_refused():
    with pytest.raises(TokenizerError, match="word"):
        tokenizer_from_dict({"type": "word", "words": "abc"})


@pytest.mark.parametrize("settings_, message", [
    ({"tokenizer": "word", "min_count": 0}, "--min-count"),
    ({"tokenizer": "word", "max_vocab": -1}, "--max-vocab"),
    ({"tokenizer": "char", "max_vocab": 100}, "--tokenizer word"),
])
def test_word_settings_are_validated(settings_, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(**settings_).validate()


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("word")
    corpus = base / "corpus.txt"
    corpus.write_text(make_text(4000), encoding="utf-8")
    result = api.train(str(corpus), str(base / "run"), quiet=True,
                       **tiny_settings(tokenizer="word", max_steps=6, eval_every=3))
    return result.run_dir


def test_word_run_trains_and_generates_whole_tokens(word_run):
    model = api.load(str(word_run))
    assert isinstance(model.tokenizer, WordTokenizer)
    pieces = list(model.generate("The quick", length=15, seed=3))
    assert len(pieces) == 15
    assert all(piece in model.tokenizer.words for piece in pieces)


def test_word_prompt_unknown_policy(word_run):
    model = api.load(str(word_run))
    with pytest.raises(TokenizerError, match="words this model never saw: 'zebra'"):
        model.encode_prompt("The zebra")
    replaced = model.encode_prompt("The zebra", unknown="replace").tolist()
    assert replaced[-1] == model.tokenizer.unknown_id and len(replaced) == 3
    assert model.tokenizer.decode(model.encode_prompt("The zebra", unknown="skip")) == "The "


def test_word_eval_reports_per_word_token_and_per_character(word_run, tmp_path, capsys):
    text = tmp_path / "held.txt"
    text.write_text(make_text(1500, seed=9), encoding="utf-8")
    result = api.evaluate_text(str(word_run), [str(text)])
    assert result.unit == "word" and result.characters > result.tokens
    assert result.nats_per_char == pytest.approx(result.nats * result.tokens / result.characters)
    assert main(["eval", str(word_run), str(text)]) == 0
    assert "nats/word-token" in capsys.readouterr().out


def test_cli_word_flags_reach_the_run(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(3000), encoding="utf-8")
    out = tmp_path / "run"
    code = main(["train", str(corpus), "--out", str(out), "--preset", "tiny", "--max-steps", "2",
                 "--device", "cpu", "--tokenizer", "word", "--min-count", "50", "--max-vocab",
                 "5"])
    assert code == 0
    assert "nats/word-token" in capsys.readouterr().err
    data = api.load(str(out)).config.data
    assert (data.tokenizer, data.min_count, data.max_vocab) == ("word", 50, 5)
    assert api.load(str(out)).tokenizer.vocab_size <= 6


def test_cli_min_count_without_word_level_is_a_one_line_error(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(500), encoding="utf-8")
    code = main(["train", str(corpus), "--out", str(tmp_path / "r"), "--min-count", "3"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("chargen: error: --min-count") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_random_primes_are_whole_known_words_from_a_line_start(tmp_path):
    """`chargen sample RUN` with no --prime starts from a random slice of the training text:
    for a word run it must be cut at whole tokens (a word cut in two is an unknown word) and
    hold no [UNK] (words under --min-count)."""
    lines = make_text(4000).splitlines()
    lines[5::7] = [f"{line} rare{index}" for index, line in enumerate(lines[5::7])]
    text = "\n".join(lines) + "\n"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    model = api.load(str(api.train(str(corpus), str(tmp_path / "run"), quiet=True, **tiny_settings(
        tokenizer="word", min_count=2, max_steps=2, eval_every=2)).run_dir))
    assert model.tokenizer.unknown_id in model.run.read_ids()
    for seed in range(30):
        prime = model.random_prime(seed)
        assert len(model.encode_prompt(prime)) == 64  # raises on an unknown word
        assert "rare" not in prime and "[UNK]" not in prime
        assert text.startswith(prime) or ("\n" + prime) in text


def test_random_primes_of_a_byte_run_are_whole_characters(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("滚滚长江东逝水，浪花淘尽英雄。是非成败转头空。\n" * 60, encoding="utf-8")
    model = api.load(str(api.train(str(corpus), str(tmp_path / "run"), quiet=True, **tiny_settings(
        tokenizer="byte", max_steps=2, eval_every=2)).run_dir))
    for seed in range(10):
        prime = model.random_prime(seed)
        assert prime and "\ufffd" not in prime and prime in corpus.read_text(encoding="utf-8")
