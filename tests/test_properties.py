"""Property-based tests: no text makes cleaning, tokenizing or batching crash or lie."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargen.batches import make_batches
from chargen.corpus import clean_text
from chargen.data import split_ids
from chargen.errors import CorpusError
from chargen.tokenizer import ByteTokenizer, CharTokenizer

EXAMPLES = settings(max_examples=300, deadline=None)


@EXAMPLES
@given(st.text(), st.booleans(), st.booleans(), st.booleans())
def test_cleaning_never_crashes_and_normalises(text, newlines, gutenberg, lowercase):
    cleaned = clean_text(text, newlines, gutenberg, lowercase)
    assert isinstance(cleaned, str)
    if newlines:
        assert "\r" not in cleaned
        assert clean_text(cleaned, newlines, False, False) == cleaned


@EXAMPLES
@given(st.text(), st.text())
def test_encoding_any_text_with_any_vocabulary(fit_text, text):
    tok = CharTokenizer.fit(fit_text)
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert ids.max(initial=0) < tok.vocab_size
    known = set(fit_text)
    for char, token in zip(text, ids.tolist()):
        if char in known:
            assert tok.decode([token]) == char
        else:
            assert token == tok.unknown_id


@EXAMPLES
@given(st.binary())
def test_byte_decoding_never_crashes_on_any_bytes(data):
    tok = ByteTokenizer()
    ids = np.frombuffer(data, dtype=np.uint8)
    assert isinstance(tok.decode(ids), str)
    stream = tok.stream_decoder()
    assert isinstance("".join(stream([i]) for i in ids.tolist()), str)


@EXAMPLES
@given(st.integers(0, 3000), st.integers(1, 64), st.integers(1, 80),
       st.sampled_from(["stream", "sequences"]), st.integers(0, 2**31))
def test_batching_any_shape_is_valid_or_refused(length, batch_size, seq_len, kind, seed):
    ids = np.arange(length, dtype=np.int64)
    try:
        train, _ = split_ids(ids, 0.1, seq_len)
        batches = make_batches(kind, train, batch_size, seq_len, seed)
    except CorpusError:
        return
    for step in (0, batches.steps_per_epoch - 1, batches.steps_per_epoch, 7 * seed % 1000):
        x, y = batches.batch(step)
        assert x.shape == (batch_size, seq_len)
        assert np.array_equal(y.numpy(), x.numpy() + 1)
        assert int(y.max()) < len(train)


@pytest.mark.parametrize("text", ["", "a", "\r\n", "\ud7ff\ue000", "\U0010ffff" * 3])
def test_edge_texts_round_trip(text):
    tok = CharTokenizer.fit(text)
    assert tok.decode(tok.encode(text)) == text


GUTENBERG_TEXT = st.sampled_from([
    "", "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\r\n",
    "\r\n*** END OF THIS PROJECT GUTENBERG EBOOK X ***\r\nlicence\r\n"])


TEXT_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=TEXT_CHARS | st.sampled_from("\r\n")),
       GUTENBERG_TEXT, GUTENBERG_TEXT, st.integers(1, 9), st.booleans())
def test_streaming_a_file_in_chunks_equals_cleaning_it_whole(tmp_path_factory, body, head, tail,
                                                             chunk, lowercase):
    import chargen.corpus as corpus

    path = tmp_path_factory.mktemp("stream") / "text.txt"
    text = head + body + tail
    path.write_bytes(text.encode("utf-8"))
    original = corpus.CHUNK_BYTES
    corpus.CHUNK_BYTES = chunk  # tiny chunks: boundaries inside CRLF and multi-byte characters
    try:
        streamed = "".join(corpus.open_corpus(str(path), lowercase=lowercase).chunks())
    finally:
        corpus.CHUNK_BYTES = original
    assert streamed == clean_text(text, True, True, lowercase)
