import json
import unicodedata

from conftest import tiny_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from chargen import api
from chargen.cli import build_parser
from chargen.corpus import clean_text, load_corpus, remove_punctuation


def test_punctuation_goes_letters_digits_symbols_and_whitespace_stay():
    text = "Hello, world! It's 5$ + 3 = 8.\n「曹操」曰：“走！” (a_b) — ¿qué?\t¡sí!"
    assert remove_punctuation(text) == "Hello world Its 5$ + 3 = 8\n曹操曰走 ab  qué\tsí"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_only_unicode_punctuation_is_removed(text):
    kept = remove_punctuation(text)
    assert kept == "".join(c for c in text if not unicodedata.category(c).startswith("P"))


def test_clean_text_and_files_strip_only_when_asked(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Wait... what?!\r\n", encoding="utf-8")
    assert clean_text("Wait... what?!", strip_punctuation=True) == "Wait what"
    assert load_corpus(str(path)).text == "Wait... what?!\n"
    assert load_corpus(str(path), strip_punctuation=True).text == "Wait what\n"


def test_strip_punctuation_is_recorded_and_changes_the_fingerprint(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("Hello, there! General Kenobi.\n" * 40, encoding="utf-8")
    plain = api.train(str(corpus), str(tmp_path / "plain"), quiet=True,
                      **tiny_settings(max_steps=1, seq_len=8, batch_size=2))
    stripped = api.train(str(corpus), str(tmp_path / "stripped"), quiet=True,
                         **tiny_settings(max_steps=1, seq_len=8, batch_size=2,
                                         strip_punctuation=True))
    meta = json.loads((stripped.run_dir / "config.json").read_text())
    assert meta["config"]["data"]["strip_punctuation"] is True
    assert meta["corpus"]["fingerprint"]["strip_punctuation"] is True
    chars = api.load(str(stripped.run_dir)).tokenizer.chars
    assert "," not in chars and "!" not in chars and "H" in chars
    assert "," in api.load(str(plain.run_dir)).tokenizer.chars


def test_cli_flag():
    args = build_parser().parse_args(["train", "c.txt", "--strip-punctuation"])
    assert args.strip_punctuation is True
    assert build_parser().parse_args(["train", "c.txt"]).strip_punctuation is None
