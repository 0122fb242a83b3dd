import pytest

from chargen.corpus import load_corpus, strip_gutenberg_boilerplate
from chargen.errors import ConfigError, CorpusError

GUTENBERG = (
    "The Project Gutenberg EBook of Something\r\nLicence words\r\n"
    "*** START OF THIS PROJECT GUTENBERG EBOOK SOMETHING ***\r\n\r\n"
    "Chapter 1\r\nThe story.\r\nTHE END\r\n"
    "*** END OF THIS PROJECT GUTENBERG EBOOK SOMETHING ***\r\nMore licence\r\n"
)


def test_reads_a_file_and_normalises_newlines(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"one\r\ntwo\rthree\n")
    assert load_corpus(str(path), strip_gutenberg=False).text == "one\ntwo\nthree\n"
    assert load_corpus(str(path), normalize_newlines=False).text == "one\r\ntwo\rthree\n"


def test_strips_gutenberg_header_and_footer(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes(GUTENBERG.encode())
    text = load_corpus(str(path)).text
    assert text == "Chapter 1\nThe story.\nTHE END\n"
    kept = load_corpus(str(path), strip_gutenberg=False).text
    assert "Licence words" in kept and "More licence" in kept


def test_text_without_markers_is_untouched():
    assert strip_gutenberg_boilerplate("plain text\n") == "plain text\n"


def test_lowercase(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("Hello World\n")
    assert load_corpus(str(path), lowercase=True).text == "hello world\n"


def test_directory_reads_text_files_sorted_and_skips_binary(tmp_path):
    (tmp_path / "b.txt").write_text("second\n")
    (tmp_path / "a.txt").write_text("first\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (tmp_path / ".hidden").write_text("secret\n")
    corpus = load_corpus(str(tmp_path))
    assert corpus.text == "first\nsecond\n"
    assert [p.rsplit("/", 1)[-1] for p in corpus.sources] == ["a.txt", "b.txt"]


def test_builtin_python_docs_is_offline_and_large():
    corpus = load_corpus("builtin:python-docs")
    assert len(corpus.text) > 100_000
    assert corpus.name == "python-docs"


def test_invalid_utf8_names_file_and_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello \xff world")
    with pytest.raises(CorpusError, match=r"bad.txt: not valid utf-8 at byte 6"):
        load_corpus(str(path))
    assert load_corpus(str(path), encoding="latin-1").text == "hello \xff world"


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: d / "missing.txt", "no such file"),
        (lambda d: _write(d / "empty.txt", b""), "empty"),
        (lambda d: _write(d / "blank.txt", b"  \n\t\n"), "empty"),
        (lambda d: _write(d / "bin.dat", b"\x00\x01\x02abc"), "binary"),
        (lambda d: _mkdir(d / "nothing"), "no text files"),
    ],
)
def test_bad_corpora_raise_corpus_errors(tmp_path, setup, message):
    path = setup(tmp_path)
    with pytest.raises(CorpusError, match=message):
        load_corpus(str(path))


def test_unknown_builtin_and_encoding(tmp_path):
    with pytest.raises(CorpusError, match="builtin:python-docs"):
        load_corpus("builtin:nope")
    with pytest.raises(ConfigError, match="encoding"):
        load_corpus("builtin:python-docs", encoding="no-such-codec")


def test_shared_corpora_match_the_tutorials(corpora_dir):
    alice = load_corpus(str(corpora_dir / "alice.txt"), lowercase=True)
    assert 140_000 <= len(alice.text) <= 150_000  # tutorial B: ~144-148k characters
    assert 40 <= len(set(alice.text)) <= 50  # tutorial B: 45-47 distinct
    assert "*** START" not in alice.text and "\r" not in alice.text
    shakespeare = load_corpus(str(corpora_dir / "tinyshakespeare.txt"))
    assert len(shakespeare.text) == 1_115_394 and len(set(shakespeare.text)) == 65


def _write(path, data):
    path.write_bytes(data)
    return path


def _mkdir(path):
    path.mkdir()
    (path / "pic.png").write_bytes(b"\x89PNG\x00\x00")
    return path
