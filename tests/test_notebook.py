"""What a notebook user gets from the API: a run's history as records (and a DataFrame where
pandas is installed), its loss curves as a figure, a short HTML summary as a run's and a
model's rich display, and progress as a widget in a kernel."""

import sys

import pytest
from conftest import tiny_settings

from chargen import api, progress
from chargen.errors import ChargenError


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    from conftest import make_text

    base = tmp_path_factory.mktemp("notebook")
    corpus = base / "corpus.txt"
    corpus.write_text(make_text(3000), encoding="utf-8")
    return api.train(str(corpus), str(base / "run"), quiet=True,
                     **tiny_settings(max_steps=12, eval_every=4))


def test_history_is_the_metrics_as_records(result):
    history = result.history
    validations = [r for r in history if "val_loss" in r]
    assert [r["step"] for r in validations] == [4, 8, 12]
    assert min(r["val_loss"] for r in validations) == pytest.approx(result.best_val)
    assert api.load(str(result.run_dir)).history == history


def test_history_frame_needs_pandas_and_says_so(result, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(ChargenError, match="pip install pandas"):
        result.history_frame()


def test_the_run_and_the_model_show_a_short_html_summary(result):
    html = result._repr_html_()
    assert "best validation" in html and f"{result.best_val:.4f}" in html and "<svg" in html
    model_html = api.load(str(result.run_dir))._repr_html_()
    assert "LSTM" in model_html and "parameters" in model_html and "<svg" in model_html
    shown = repr(api.load(str(result.run_dir)))  # and in a plain console
    assert shown.startswith("<chargen model") and "LSTM" in shown and "best validation" in shown
    assert repr(result).startswith("TrainResult(run_dir=")


def test_plot_returns_a_figure_with_both_views(result):
    figure = result.plot()
    assert [axes.get_title() for axes in figure.axes] == ["loss against steps",
                                                         "loss against training time"]
    assert api.load(str(result.run_dir)).plot().axes


def test_progress_is_a_widget_in_a_kernel_and_nothing_when_quiet(monkeypatch):
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    with progress.Progress(10, None, 0, 0.0) as shown:
        assert type(shown.bar).__module__ == "tqdm.notebook"
    monkeypatch.setattr(progress, "has_widgets", lambda: False)  # no ipywidgets: text
    with progress.Progress(10, None, 0, 0.0) as text:
        assert type(text.bar).__module__ == "tqdm.std"
    with progress.Progress(10, None, 0, 0.0, quiet=True) as silent:
        assert silent.bar is None


def test_a_pseudo_terminal_without_a_size_gets_progress_lines_not_an_invisible_bar(monkeypatch):
    import fcntl
    import os
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    with open(follower, "w", closefd=True) as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        assert terminal.isatty() and not progress.live_terminal()
        with progress.Progress(10, None, 0, 0.0) as sizeless:
            assert sizeless.bar is None  # plain log lines instead
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        assert progress.live_terminal()
        with progress.Progress(10, None, 0, 0.0) as sized:
            assert sized.bar is not None
    os.close(leader)
