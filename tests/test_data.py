import numpy as np
import pytest

from chargen.batches import make_batches
from chargen.data import SequenceBatches, StreamBatches, eval_windows, split_ids
from chargen.errors import CorpusError

IDS = (np.arange(5000) % 251).astype(np.uint8)
POSITIONS = np.arange(5000)  # ids equal to their own position: shifts are easy to see


def test_split_is_contiguous_last_fraction():
    train, val = split_ids(IDS, 0.1, 32)
    assert len(val) == 500 and len(train) == 4500
    assert np.array_equal(np.concatenate([train, val]), IDS)


def test_split_refuses_validation_shorter_than_a_sequence():
    with pytest.raises(CorpusError, match="validation part"):
        split_ids(IDS[:300], 0.1, 32)
    with pytest.raises(CorpusError, match="training part"):
        split_ids(IDS[:100], 0.9, 32)


@pytest.mark.parametrize("kind", ["stream", "sequences"])
def test_targets_are_inputs_shifted_by_one(kind):
    batches = make_batches(kind, POSITIONS, batch_size=4, seq_len=16, seed=3)
    for step in range(7):
        x, y = batches.batch(step)
        assert x.shape == y.shape == (4, 16)
        assert np.array_equal(y.numpy(), x.numpy() + 1)


def test_streams_continue_across_batches_within_an_epoch():
    batches = StreamBatches(POSITIONS, batch_size=4, seq_len=16, seed=0)
    for step in range(batches.steps_per_epoch - 1):
        x, _ = batches.batch(step)
        x_next, _ = batches.batch(step + 1)
        assert np.array_equal(x_next[:, 0].numpy(), x[:, -1].numpy() + 1)
        assert not batches.starts_new_stream(step + 1)
    assert batches.starts_new_stream(batches.steps_per_epoch)


def test_streams_are_disjoint_rows():
    batches = StreamBatches(POSITIONS, batch_size=4, seq_len=16, seed=0)
    seen = np.concatenate([batches.batch(s)[0].numpy().ravel()
                           for s in range(batches.steps_per_epoch)])
    assert len(np.unique(seen)) == len(seen)


def test_sequences_cover_distinct_chunks_each_epoch():
    batches = SequenceBatches(POSITIONS, batch_size=4, seq_len=16, seed=0)
    starts = [batches.batch(s)[0][:, 0].numpy() for s in range(batches.steps_per_epoch)]
    starts = np.concatenate(starts)
    assert len(np.unique(starts)) == len(starts)
    assert np.all(np.diff(np.sort(starts)) % 16 == 0)


@pytest.mark.parametrize("kind", ["stream", "sequences"])
def test_batches_are_a_function_of_seed_and_step(kind):
    a = make_batches(kind, POSITIONS, 4, 16, seed=5)
    b = make_batches(kind, POSITIONS, 4, 16, seed=5)
    for step in [0, 3, 400, 2, 999]:  # any order: resume needs random access
        assert np.array_equal(a.batch(step)[0], b.batch(step)[0])
    c = make_batches(kind, POSITIONS, 4, 16, seed=6)
    assert not np.array_equal(a.batch(400)[0], c.batch(400)[0])


def test_streams_refuse_too_little_text():
    with pytest.raises(CorpusError, match="too short"):
        StreamBatches(POSITIONS[:100], batch_size=8, seq_len=16, seed=0)


def test_eval_windows_predict_every_position_once():
    ids = np.arange(1001)
    targets = np.concatenate([y.numpy().ravel() for _, y in eval_windows(ids, 30, max_streams=8)])
    inputs = np.concatenate([x.numpy().ravel() for x, _ in eval_windows(ids, 30, max_streams=8)])
    assert np.array_equal(np.sort(targets), np.arange(1, 1001))
    assert np.array_equal(np.sort(inputs) + 1, np.sort(targets))


def test_jittered_windows_vary_in_length_and_keep_streams_contiguous():
    ids = np.arange(20_000, dtype=np.int64)
    batches = StreamBatches(ids, batch_size=4, seq_len=20, seed=3, jitter=0.5)
    steps = batches.steps_per_epoch
    windows = [batches.batch(step) for step in range(steps)]
    lengths = [x.shape[1] for x, _ in windows]
    assert len(set(lengths)) > 3 and min(lengths) >= 10 and max(lengths) <= 30
    assert sum(lengths) == steps * 20  # mean exactly seq_len: the epoch reads the same text
    for (_, y), (x_next, _) in zip(windows, windows[1:]):
        assert np.array_equal(x_next[:, 0].numpy(), y[:, -1].numpy())  # streams continue


def test_jittered_batches_are_a_function_of_seed_and_step():
    ids = np.arange(20_000, dtype=np.int64)
    first = StreamBatches(ids, 4, 20, seed=3, jitter=0.5)
    sequence = [first.batch(step) for step in range(first.steps_per_epoch + 5)]
    fresh = StreamBatches(ids, 4, 20, seed=3, jitter=0.5)
    for step in (first.steps_per_epoch + 3, 7, 0):
        assert all(np.array_equal(a, b) for a, b in zip(fresh.batch(step), sequence[step]))


def test_no_jitter_keeps_the_fixed_windows():
    ids = np.arange(5_000, dtype=np.int64)
    plain = make_batches("stream", ids, 4, 20, 3)
    zero = make_batches("stream", ids, 4, 20, 3, jitter=0.0)
    for step in range(3):
        x, y = plain.batch(step)
        assert x.shape == (4, 20)
        assert all(np.array_equal(a, b) for a, b in zip((x, y), zero.batch(step)))
