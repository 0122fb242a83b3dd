"""Chinese text (issue #3): character-level and byte-level training and sampling on
sanguo_yanyi.txt, the vocabulary and the unknown-character policy."""

import numpy as np
import pytest
from conftest import tiny_settings

from chargen import api
from chargen.corpus import open_corpus
from chargen.errors import TokenizerError
from chargen.tokenizer import scan
from chargen.words import split_words

pytestmark = pytest.mark.corpus
SLICE_CHARS = 30_000  # the first chapters: 曹操 appears early


@pytest.fixture
def sanguo(corpora_dir):
    return corpora_dir / "sanguo_yanyi.txt"


@pytest.fixture
def sanguo_slice(sanguo, tmp_path):
    path = tmp_path / "sanguo_head.txt"
    path.write_text(sanguo.read_text(encoding="utf-8")[:SLICE_CHARS], encoding="utf-8")
    return path


def test_whole_novel_vocabulary(sanguo):
    _, raw = scan("char", open_corpus(str(sanguo), strip_gutenberg=False).chunks())
    assert raw.distinct == 4181
    tokenizer, cleaned = scan("char", open_corpus(str(sanguo)).chunks())
    # The Gutenberg footer line goes, and with it the letters only it uses.
    assert tokenizer.vocab_size == cleaned.distinct + 1 and 4000 < cleaned.distinct < raw.distinct
    assert "曹" in tokenizer.chars and "G" not in tokenizer.chars


def test_char_level_trains_and_samples_with_a_chinese_prime(sanguo_slice, tmp_path):
    text = sanguo_slice.read_text(encoding="utf-8")
    run = api.train(str(sanguo_slice), str(tmp_path / "run"), quiet=True,
                    **tiny_settings(max_steps=3, eval_every=3)).run_dir
    model = api.load(str(run))
    assert model.tokenizer.vocab_size == len(set(text)) + 1
    (sample,) = model.sample("曹操", length=40, seed=0, temperature=0.8)
    assert len(sample) == 40 and set(sample) <= set(text)
    (beamed,) = model.sample("曹操", length=10, beam=2, precision="fp32")
    assert len(beamed) == 10 and set(beamed) <= set(text)


def test_unknown_character_in_a_chinese_prompt_follows_the_policy(sanguo, sanguo_slice, tmp_path):
    seen = set(sanguo_slice.read_text(encoding="utf-8"))
    unseen = next(c for c in sanguo.read_text(encoding="utf-8")[SLICE_CHARS:] if c not in seen)
    run = api.train(str(sanguo_slice), str(tmp_path / "run"), quiet=True,
                    **tiny_settings(max_steps=1)).run_dir
    model = api.load(str(run))
    prompt = "曹操" + unseen
    with pytest.raises(TokenizerError, match=repr(unseen)):
        model.encode_prompt(prompt)
    replaced = model.encode_prompt(prompt, unknown="replace").tolist()
    assert len(replaced) == 3 and replaced[-1] == model.tokenizer.unknown_id
    assert model.tokenizer.decode(model.encode_prompt(prompt, unknown="skip")) == "曹操"
    assert len(model.sample(prompt, length=5, seed=1, unknown="replace")[0]) == 5


def test_byte_level_trains_and_samples_with_a_chinese_prime(sanguo_slice, tmp_path):
    run = api.train(str(sanguo_slice), str(tmp_path / "run"), quiet=True,
                    **tiny_settings(tokenizer="byte", max_steps=3, eval_every=3)).run_dir
    model = api.load(str(run))
    assert model.tokenizer.vocab_size == 256
    assert model.encode_prompt("曹操").tolist() == list("曹操".encode())
    pieces = list(model.generate("曹操", length=30, seed=0))
    # one piece per byte that completes text: a step inside a multi-byte character makes none
    assert 0 < len(pieces) <= 30 and all(pieces) and isinstance("".join(pieces), str)
    assert len(np.asarray(api.load(str(run)).run.read_ids())) == len(
        sanguo_slice.read_text(encoding="utf-8").encode())


def test_word_level_reads_each_chinese_character_as_a_token(sanguo_slice):
    text = sanguo_slice.read_text(encoding="utf-8")[:2000]
    tokens = split_words(text)
    assert all(len(t) == 1 for t in tokens if not t.isspace())
    assert "".join(tokens) == text
