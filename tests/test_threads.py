import subprocess
import sys
import time

import pytest
import torch
from conftest import tiny_settings

from chargen import api
from chargen.checkpoint import RunDir
from chargen.threads import (
    FIRST_LOOK_SECONDS,
    RECHECK_SECONDS,
    CpuSample,
    ThreadGovernor,
    free_cores,
    others_busy,
    read_sample,
)


@pytest.fixture(autouse=True)
def no_fixed_count(monkeypatch):
    """conftest fixes OMP_NUM_THREADS for the other tests; these test the choice itself."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_free_cores_leave_the_neighbours_cores_and_keep_one():
    assert free_cores(0.0, 2) == 2
    assert free_cores(0.1, 2) == 2  # noise is not a neighbour
    assert free_cores(0.6, 2) == 1  # a neighbour sharing a core with a spinning thread
    assert free_cores(1.0, 2) == 1
    assert free_cores(3.5, 2) == 1
    assert free_cores(1.9, 8) == 6


def test_others_load_excludes_this_process():
    before = CpuSample(wall=10.0, busy=100.0, own=5.0)
    after = CpuSample(wall=12.0, busy=104.0, own=7.0)  # 4 busy CPU-seconds, 2 of them ours
    assert others_busy(before, after) == pytest.approx(1.0)
    assert others_busy(after, after) == 0.0


class FakeStat:
    """Samples handed out in turn; each 'others' figure is the neighbours' cores since the last."""

    def __init__(self, others: list[float]):
        self.others, self.wall, self.busy = list(others), 0.0, 0.0

    def __call__(self) -> CpuSample:
        if self.wall:
            load = self.others.pop(0)
            self.busy += load * RECHECK_SECONDS
        sample = CpuSample(self.wall, self.busy, 0.0)
        self.wall += RECHECK_SECONDS
        return sample


def test_the_governor_follows_a_neighbour_that_comes_and_goes():
    applied = []
    governor = ThreadGovernor(0, read=FakeStat([0.0, 1.0, 1.0, 0.0]), cores=2,
                              apply=applied.append)
    assert governor.auto and applied == [2]
    counts = [governor.check(now=step * RECHECK_SECONDS) for step in range(1, 5)]
    assert counts == [2, 1, 1, 2]
    assert applied == [2, 1, 2]  # torch is only told when the count changes


def test_the_governor_waits_for_its_interval():
    governor = ThreadGovernor(0, read=FakeStat([1.0]), cores=2, apply=lambda n: None)
    assert governor.check(now=FIRST_LOOK_SECONDS / 2) == 2  # too soon: no new look
    assert governor.check(now=FIRST_LOOK_SECONDS) == 1


@pytest.mark.parametrize("setting, env, expected", [(3, None, 3), (0, "1", 1), (2, "1", 2)])
def test_a_count_the_user_gave_is_never_changed(monkeypatch, setting, env, expected):
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    applied = []
    governor = ThreadGovernor(setting, read=FakeStat([2.0, 2.0]), cores=4, apply=applied.append)
    assert not governor.auto
    assert governor.check(now=100.0) == expected and applied == [expected]


def test_without_proc_stat_the_count_stays():
    governor = ThreadGovernor(0, read=lambda: None, cores=2, apply=lambda n: None)
    assert not governor.auto and governor.check(now=100.0) == 2
    assert read_sample("/nonexistent/stat") is None


@pytest.mark.skipif(read_sample() is None, reason="no /proc/stat on this system")
def test_a_real_busy_neighbour_is_seen():
    neighbour = subprocess.Popen([sys.executable, "-c", "print('spinning', flush=True)\n"
                                  "while True: pass"], stdout=subprocess.PIPE, text=True)
    try:
        assert neighbour.stdout.readline() == "spinning\n"
        before = read_sample()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # this process busy too: its own time is excluded
            sum(range(1000))
        seen = others_busy(before, read_sample())
    finally:
        neighbour.kill()
        neighbour.wait()
    assert seen >= 0.5


@pytest.mark.parametrize("setting", [0, 1])
def test_training_runs_the_governed_count_and_logs_it(text_file, tmp_path, monkeypatch, setting):
    before = torch.get_num_threads()
    try:
        result = api.train(str(text_file), str(tmp_path / "run"), quiet=True,
                           **tiny_settings(threads=setting))
        logged = [r["threads"] for r in RunDir(result.run_dir).read_metrics() if "threads" in r]
        assert logged and all(count >= 1 for count in logged)
        if setting:
            assert set(logged) == {setting} and torch.get_num_threads() == setting
    finally:
        torch.set_num_threads(before)
