"""Data-parallel training with torchrun: 2 CPU processes over gloo on loopback."""

import os
import subprocess
import sys

import torch
from conftest import make_text

from chargen import api
from chargen.checkpoint import LAST, RunDir, load_checkpoint
from chargen.cli import main
from chargen.distributed import World

FLAGS = ["--hidden-size", "32", "--num-layers", "2", "--embedding-dim", "16", "--seq-len", "32",
         "--dropout", "0", "--precision", "fp32", "--device", "cpu", "--max-steps", "12",
         "--eval-every", "6", "--log-every", "1", "--warmup-steps", "2", "--schedule", "constant"]


def test_ranks_take_their_own_rows():
    assert [World(r, 3).rows(4) for r in range(3)] == [slice(0, 4), slice(4, 8), slice(8, 12)]
    assert not World().enabled and World().is_main


def torchrun(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", "-m", "chargen", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(20000))
    # Every log point (each step here) also checks that the ranks hold the same weights.
    ranks = torchrun("train", corpus, "--out", tmp_path / "ddp", "--batch-size", "4", *FLAGS)
    assert ranks.stderr.count("done: 12 steps") == 1  # only rank 0 reports
    assert main(["train", str(corpus), "--out", str(tmp_path / "one"), "--batch-size", "8",
                 *FLAGS, "--quiet"]) == 0
    ddp, _, _ = load_checkpoint(tmp_path / "ddp" / LAST)
    one, _, _ = load_checkpoint(tmp_path / "one" / LAST)
    for name in one:
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-4, atol=1e-5)
    losses = [[r["train_loss"] for r in RunDir(tmp_path / run).read_metrics() if "train_loss" in r]
              for run in ("ddp", "one")]
    torch.testing.assert_close(torch.tensor(losses[0]), torch.tensor(losses[1]), rtol=0,
                               atol=1e-5)
    assert len(losses[0]) == 12

    # Stopped at 6 and resumed by two processes: the same weights as 12 steps straight,
    # the carried stream state of both ranks included.
    flags = [f if f != "12" else "6" for f in FLAGS]
    torchrun("train", corpus, "--out", tmp_path / "split", "--batch-size", "4", *flags)
    torchrun("train", "--resume", tmp_path / "split", "--max-steps", "12")
    split, _, _ = load_checkpoint(tmp_path / "split" / LAST)
    straight, _, _ = load_checkpoint(tmp_path / "ddp" / LAST)
    assert all(torch.equal(split[name], straight[name]) for name in straight)
    resumed = api.train(resume=str(tmp_path / "ddp"), max_steps=15, quiet=True)
    assert resumed.steps == 15  # a data-parallel run resumes in a single process too
