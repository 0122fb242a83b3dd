import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargen.errors import TokenizerError
from chargen.tokenizer import (
    ByteTokenizer,
    CharTokenizer,
    narrowest_dtype,
    save_tokenizer_json,
    tokenizer_from_dict,
)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_char_round_trip_any_unicode(text):
    tok = CharTokenizer.fit(text)
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text
    assert tok.unknown_id not in ids.tolist()


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_byte_round_trip_any_unicode(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids.dtype == np.uint8
    assert tok.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1), st.text())
def test_char_tokenizer_survives_json(fit_text, other):
    tok = CharTokenizer.fit(fit_text)
    import json

    again = tokenizer_from_dict(json.loads(save_tokenizer_json(tok)))
    assert again.chars == tok.chars
    assert again.encode(other).tolist() == tok.encode(other).tolist()


def test_char_ids_are_sorted_characters_after_unknown():
    tok = CharTokenizer.fit("cabbage")
    assert tok.chars == ["a", "b", "c", "e", "g"]
    assert tok.encode("abc").tolist() == [1, 2, 3]
    assert tok.vocab_size == 6
    assert tok.never_sample == [0]


def test_unknown_characters_map_to_unknown_id():
    tok = CharTokenizer.fit("abc")
    assert tok.encode("axbz").tolist() == [1, 0, 2, 0]
    assert tok.unknown_chars("axbzx") == ["x", "z"]


def test_encoding_uses_narrowest_dtype():
    assert CharTokenizer.fit("abc").encode("abc").dtype == np.uint8
    wide = "".join(chr(0x4E00 + i) for i in range(300))
    assert CharTokenizer.fit(wide).encode(wide).dtype == np.uint16
    assert narrowest_dtype(256) == np.uint8
    assert narrowest_dtype(257) == np.uint16
    assert narrowest_dtype(70000) == np.uint32


def test_byte_stream_decoder_holds_back_split_characters():
    tok = ByteTokenizer()
    ids = tok.encode("é€").tolist()
    decode = tok.stream_decoder()
    pieces = [decode([i]) for i in ids]
    assert "".join(pieces) == "é€"
    assert pieces[0] == ""  # first byte of 'é' alone is incomplete


def test_scan_fits_by_kind_and_counts():
    from chargen.tokenizer import scan

    tok, stats = scan("byte", ["ab", "\u00e9 "])
    assert tok.vocab_size == 256 and stats.tokens == 5 and stats.characters == 4
    tok, stats = scan("char", ["ab", "\u00e9 "])
    assert tok.vocab_size == 5 and stats.tokens == 4 and stats.distinct == 4 and stats.has_text
    assert not scan("char", [" \n", "\t"])[1].has_text


def test_malformed_tokenizer_json_is_refused():
    with pytest.raises(TokenizerError):
        tokenizer_from_dict({"type": "words"})
    with pytest.raises(TokenizerError):
        tokenizer_from_dict(["a", "b"])
