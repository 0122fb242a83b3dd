"""chargen plot: the loss curves of runs as a PNG."""

import builtins
import json
import math
import shutil
import struct

import pytest
from test_cli import run_cli

from chargen.errors import ChargenError
from chargen.plot import load_curves, plot_runs

pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'chargen[plot]')")


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _run_with_metrics(trained_run, target, records):
    shutil.copytree(trained_run, target)
    (target / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return target


def test_curves_are_bits_per_char_and_a_rolled_back_step_keeps_its_later_record(trained_run, tmp_path):
    records = [{"step": 10, "time": 1.0, "train_loss": 2.0}, {"step": 20, "time": 2.0, "train_loss": 9.0},
               {"step": 20, "time": 2.0, "val_loss": 1.5, "val_bpc": 1.5 / math.log(2)},
               {"step": 20, "time": 4.0, "train_loss": 1.8}]  # step 20 again, after a rollback
    curves = load_curves(str(_run_with_metrics(trained_run, tmp_path / "r", records)))
    assert [(s, t) for s, t, _ in curves.train] == [(10, 1.0), (20, 4.0)]
    assert curves.train[1][2] == pytest.approx(1.8 / math.log(2))
    assert curves.val == [(20, 2.0, pytest.approx(1.5 / math.log(2)))]
    assert curves.unit == "char"


def test_plot_writes_a_png_into_the_first_run_by_default(trained_run, tmp_path):
    first = tmp_path / "first"
    shutil.copytree(trained_run, first)
    second = _run_with_metrics(trained_run, tmp_path / "second", [
        {"step": s, "time": s / 10, "train_loss": 3 - s / 50} for s in range(5, 60, 5)])
    written = plot_runs([str(first), str(second)])
    assert written == first / "loss.png"
    width, height = _png_size(written)
    assert width > height > 100


def test_a_run_without_metrics_is_a_one_line_error(trained_run, tmp_path):
    empty = _run_with_metrics(trained_run, tmp_path / "empty", [])
    with pytest.raises(ChargenError, match="no metrics yet") as caught:
        plot_runs([str(empty)], str(tmp_path / "x.png"))
    assert "\n" not in str(caught.value) and not (tmp_path / "x.png").exists()


def test_a_missing_matplotlib_names_the_pip_command(trained_run, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ChargenError, match=r"pip install 'chargen\[plot\]'"):
        plot_runs([str(trained_run)], str(tmp_path / "x.png"))


def test_plot_command_end_to_end(trained_run, tmp_path):
    out = tmp_path / "both.png"
    done = run_cli("plot", trained_run, trained_run, "--out", out)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and str(out) in done.stderr
    assert _png_size(out)[0] > 0
    missing = run_cli("plot", tmp_path / "nope")
    assert missing.returncode == 1
    assert missing.stderr.startswith("chargen: error:") and "Traceback" not in missing.stderr
