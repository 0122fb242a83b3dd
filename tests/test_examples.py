"""The notebooks in examples/ (the tutorials' twins) run in a real Jupyter kernel at short
settings, offline, and show what they promise: the alphabet table, a loss figure, a run's
summary, generated text of the asked length."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CORPORA = os.environ.get("CHARGEN_CORPORA")
LENGTH = 60
# notebook -> (the corpus it reads from CHARGEN_CORPORA, or None; its short settings)
NOTEBOOKS = {
    "alphabet": (None, {"EPOCHS": 3, "SEEDS": 1}),
    "alice": ("alice.txt", {"EPOCHS_SMALL": 1, "EPOCHS_LARGE": 1, "MAX_STEPS": 3}),
    "shakespeare_gru": ("tinyshakespeare.txt", {"EPOCHS": 1, "MAX_STEPS": 2}),
    "chinese_lstm": ("sanguo_yanyi.txt", {"MAX_TIME": 60, "MAX_STEPS": 3}),
    "your_own_text": (None, {"MINUTES": 1, "MAX_STEPS": 3}),
}


def test_every_notebook_is_tested():
    assert {path.stem for path in EXAMPLES.glob("*.ipynb")} == set(NOTEBOOKS)


def run_notebook(name: str, tmp_path: Path, monkeypatch) -> nbformat.NotebookNode:
    corpus, settings = NOTEBOOKS[name]
    if corpus is not None:
        if not CORPORA or not (Path(CORPORA) / corpus).is_file():
            pytest.skip(f"{corpus} not found: set CHARGEN_CORPORA to ../shared/corpora "
                        "(make test does)")
        settings = {**settings, "CORPUS": str(Path(CORPORA) / corpus)}
    settings = {**settings, "LENGTH": LENGTH} if name != "alphabet" else settings
    notebook = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    index = next(i for i, cell in enumerate(notebook.cells)
                 if "parameters" in cell.metadata.get("tags", []))
    given = "\n".join(f"{key} = {value!r}" for key, value in settings.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(given))  # as papermill does
    monkeypatch.setenv("CHARGEN_NO_PROBE", "1")  # auto-configuration without the speed probe
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return notebook


def tagged(notebook, tag: str):
    return next(cell for cell in notebook.cells if tag in cell.metadata.get("tags", []))


def printed(cell) -> str:
    return "".join(out.get("text", "") for out in cell.outputs if out.output_type == "stream"
                   and out.name == "stdout")


def shown(notebook, mime: str) -> list[str]:
    return [out["data"][mime] for cell in notebook.cells for out in cell.get("outputs", [])
            if mime in out.get("data", {})]


def test_the_alphabet_notebook_prints_the_table_for_every_framing(tmp_path, monkeypatch):
    notebook = run_notebook("alphabet", tmp_path, monkeypatch)
    table = printed(tagged(notebook, "table"))
    rows = [line for line in table.splitlines() if line.startswith("| ") and "%" in line]
    assert table.startswith("| framing |") and len(rows) == 8  # 4 framings x 2 inputs
    assert "3 epochs" in table


@pytest.mark.parametrize("name", ["alice", "shakespeare_gru", "chinese_lstm", "your_own_text"])
def test_a_training_notebook_shows_its_run_its_curve_and_text(name, tmp_path, monkeypatch):
    notebook = run_notebook(name, tmp_path, monkeypatch)
    assert any("best validation" in html for html in shown(notebook, "text/html"))
    figure = tagged(notebook, "figure")
    assert any("image/png" in out.get("data", {}) for out in figure.outputs)
    text = printed(tagged(notebook, "sample"))
    if name == "shakespeare_gru":  # five samples in one batch, each after its prompt
        samples = text.split("-" * 40 + "\n")[:-1]
        assert len(samples) == 5
        assert all(s.startswith("ROMEO:") and len(s) == len("ROMEO:") + LENGTH + 1
                   for s in samples)
    else:  # printed with its newline, or streamed piece by piece without one
        assert len(text) == LENGTH + (name != "your_own_text")
    assert any(Path(tmp_path, "runs").iterdir())
