"""Auto-configuration: model size, regularisation and batch from the corpus size, the
vocabulary, the time budget and this machine's measured speed.

`choose` is a pure function of those numbers (tests call it directly); `measured_speed` times a
few training steps of the reference model (the default 2x512) and of a small one (1x256) at
start-up, which give this machine's speed and its per-character overhead, and is skipped when
CHARGEN_NO_PROBE is set (then NOMINAL_CHARS_PER_S and COST_OVERHEAD stand in).

The rule, in three steps:
1. Size: the largest candidate that (a) sees at least CHARS_PER_PARAM training characters per
   recurrent parameter within the budget, or, in a long budget, ENOUGH_CHARS characters and
   at least LONG_CHARS_PER_PARAM per parameter (else it stays undertrained) and (b) has at most
   PARAMS_PER_TOKEN recurrent parameters per training token (else it memorises the corpus).
2. Regularisation from the memorisation pressure: the epochs that model will make over the
   corpus times its parameters per training token; the higher, the stronger the dropout
   (REGULARISATION tiers).
3. Sequence length: shorter windows (SHORT_SEQ_LEN) when a time budget allows that model fewer
   than MIN_UPDATES optimiser steps at the default length.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from dataclasses import dataclass

from .config import DataConfig, ModelConfig
from .model import estimate_parameters

log = logging.getLogger("chargen")

# (num_layers, hidden_size), smallest first.
CANDIDATES = ((1, 256), (2, 256), (2, 384), (2, 512), (2, 768), (2, 1024))
REFERENCE = ModelConfig()  # the probe's model: 2x512 LSTM, embedding 64
SMALL = ModelConfig(num_layers=1, hidden_size=256)  # the probe's second model
# Per-character cost of a model ~ its parameters + a fixed overhead (gates, the head, the
# optimiser, dispatch). The probe times REFERENCE and SMALL and solves for this machine's
# overhead: on a 2-core AMD Zen 3 in fp32, 2x512 at 6.4k chars/s and 1x256 at 47.8k give
# ~0.1M (compute-bound: cost follows the parameters); on a Zen 5 with bf16, 18k and 100k give
# ~0.3M, the figure used when there is no probe.
COST_OVERHEAD = 300_000
NOMINAL_CHARS_PER_S = 18_000.0  # 2x512, bf16, 2 CPU cores: what the probe measures here
BUDGET_EFFICIENCY = 0.9  # the share of the budget spent in training steps (not evaluation)
# Training characters per recurrent parameter a candidate must see in the budget. Measured on
# tiny Shakespeare in 3 minutes (AVX2 emulation, fp32, the wsd schedule at lr 4e-3): 2x256 saw
# 5.4 per parameter and reached 1.5437 nats/char, 1x256 saw 30 and reached 1.4822; the earlier
# 2.0 was fitted under a schedule that spent the start of the budget warming up.
CHARS_PER_PARAM = 10.0
# A long budget lets a larger model win with fewer characters per parameter: on tiny
# Shakespeare in 60 minutes (Zen 5, bf16) a 2x768 that saw 4.1 per parameter (30M characters)
# reached 1.4211 nats/char against 1.4432 for the 2x512 that saw 20; in 10 minutes a 2x512
# with 3.4 per parameter (11M characters) did no better than a 2x256 (1.4532 vs 1.4526).
ENOUGH_CHARS = 20_000_000
LONG_CHARS_PER_PARAM = 3.0
# At most this many recurrent parameters per training token, whatever the budget: on Alice
# (130k training tokens) in 60 minutes a 2x384 (14.4 per token) stood still from minute 5 and
# ended at 1.3559 nats/char (Zen 5, bf16; 1.35 on a Zen 3 in fp32) under the strong tier, where
# a 2x256 (6.6 per token) kept improving to minute 59 and reached 1.3086 (Zen 3, fp32), and
# 1.3144 on a Zen 4 in bf16 (best at minute 30, at twice the epochs); tiny Shakespeare's 2x768
# (7.3 per token) won its hour. The earlier 20 was not measured.
PARAMS_PER_TOKEN = 10.0
# Training characters a small model needs before its samples are mostly words: 1x256 with the
# default recipe passed 1.7 nats/char on tiny Shakespeare after ~2M characters, and 1.55 on
# python-docs after ~1M (benchmarks/RESULTS.md, 3-minute runs and the demo on AVX2 emulation).
USEFUL_CHARS = 2_000_000
# Memorisation pressure: the epochs a run makes times its recurrent parameters per training
# token. A model memorises sooner the more often it sees each character and the more parameters
# it has for each; epochs alone misjudged the size: at ~15 epochs a 1x256 (0.33 parameters per
# token of tiny Shakespeare) lost 0.037 nats/char to the medium tier it was given (pressure 5),
# while a 2x768 (7.3 per token) memorised under medium at 21 epochs (pressure 150).
# (lowest pressure, settings): the last tier the run reaches applies.
REGULARISATION = (
    (0.0, {"dropout": 0.1}),
    (8.0, {"dropout": 0.25}),  # 2x256 on tiny Shakespeare, 10 minutes of fp32 on 2 cores
    (20.0, {"dropout": 0.3, "locked_dropout": True, "weight_drop": 0.2,
            "embedding_dropout": 0.05, "seq_len_jitter": 0.2}),
    # From 400: 2x768 under medium at pressure ~220 (60 minutes, bf16) reached 1.4211 against
    # 1.4432 for a 2x512 under strong at ~220; Alice's 2x256 (~1600) wants strong.
    (400.0, {"dropout": 0.4, "locked_dropout": True, "weight_drop": 0.4,
             "embedding_dropout": 0.1, "seq_len_jitter": 0.2}),
)
# A large vocabulary (CJK characters, words: the embedding and output layer rival the
# recurrent stack in size) is limited by how often each symbol is seen, not by memorisation: measured
# on sanguo_yanyi (4,157 symbols, 10 minutes), dropout 0.25 on 2x384 ended at training loss
# 4.85 and validation 5.15 nats/char, against 4.10 / 4.77 for a plain 1x256 without dropout.
# There the size counts every parameter, and there is no dropout.
# Depth learns slowly there: 150 steps at a constant lr reached 5.57 nats/char with 1x256 and
# 6.38 with 2x256 (bf16 and fp32 alike), so a large vocabulary gets one wider layer.
# And a higher peak learning rate: 150 steps of 1x256 reached 5.57 / 5.28 / 4.95 nats/char at
# lr 2e-3 / 4e-3 / 8e-3 (the rare symbols' rows need the larger steps).
LARGE_VOCABULARY = {"dropout": 0.0, "lr": 6e-3}
# Up to this memorisation pressure only: at 60 minutes (1x512, pressure 119, Zen 5 bf16) no
# dropout was best at minute 4 (4.7139) and rose at every evaluation after it (5.31 at minute
# 14), where the medium tier reached 4.6108 (better than 4.6510 in 10 minutes); from here the
# tiers of REGULARISATION apply.
LARGE_VOCABULARY_PRESSURE = 20.0
WIDE_CANDIDATES = ((1, 256), (1, 512), (1, 1024))
LARGE_VOCABULARY_SIZE = 1000  # letters, digits, punctuation: < 200; CJK text, words: thousands
# Optimiser steps a time budget must allow at the default window of 100; below it the windows
# are SHORT_SEQ_LEN long (the state still flows between them), which doubles the updates for the
# same characters at about the same speed: tiny Shakespeare in 10 minutes on the AVX2
# emulation, 2 threads, 2x256 (~2,400 steps at 100): 1.4613 nats/char at 50 against 1.4861 in one
# run; over four runs at 50 a mean of 1.4747, against 1.4861 and 1.4898 in two at 100.
MIN_UPDATES = 4000
DEFAULT_SEQ_LEN = DataConfig().seq_len  # 100
SHORT_SEQ_LEN = 50
SIZE_FIELDS = ("hidden_size", "num_layers")
AUTO_FIELDS = SIZE_FIELDS + ("dropout", "locked_dropout", "weight_drop", "embedding_dropout",
                             "seq_len_jitter", "batch_size", "lr", "seq_len")


@dataclass(frozen=True)
class AutoChoice:
    settings: dict
    reason: str
    warning: str = ""  # the budget is too small for useful text on this machine


def recurrent_parameters(num_layers: int, hidden_size: int, embedding_dim: int = 64) -> int:
    config = ModelConfig(num_layers=num_layers, hidden_size=hidden_size,
                         embedding_dim=embedding_dim)
    return estimate_parameters(config, 0)


def chars_per_second(num_layers: int, hidden_size: int, vocab_size: int,
                     reference_chars_per_s: float, overhead: float = COST_OVERHEAD) -> float:
    """Estimated training speed of a candidate, scaled from the reference model's."""
    def cost(config: ModelConfig) -> float:
        return estimate_parameters(config, vocab_size) + overhead

    candidate = ModelConfig(num_layers=num_layers, hidden_size=hidden_size)
    return reference_chars_per_s * cost(REFERENCE) / cost(candidate)


def choose(train_tokens: int, vocab_size: int, budget_s: float, reference_chars_per_s: float,
           size: tuple[int, int] | None = None, max_chars: float | None = None,
           fits=None, overhead: float = COST_OVERHEAD) -> AutoChoice:
    """The settings for a corpus of `train_tokens` over `vocab_size` symbols trained for
    `budget_s` seconds (may be math.inf) on a machine where the reference model runs
    `reference_chars_per_s`, and for at most `max_chars` characters (a step or epoch limit).
    `size` (num_layers, hidden_size) fixes the model; then only the rest is chosen.
    `fits(num_layers, hidden_size)`: whether a candidate's training fits in memory;
    `overhead`: this machine's per-character cost beyond the parameters (fit_overhead)."""
    large_vocabulary = vocab_size >= LARGE_VOCABULARY_SIZE
    candidates = WIDE_CANDIDATES if large_vocabulary else CANDIDATES
    if fits is not None and not size:
        candidates = [c for c in candidates if fits(*c)] or candidates[:1]
    for layers, hidden in [size] if size else reversed(candidates):
        rate = chars_per_second(layers, hidden, vocab_size, reference_chars_per_s, overhead)
        seen = min(rate * budget_s * BUDGET_EFFICIENCY, max_chars or math.inf)
        params = recurrent_parameters(layers, hidden)
        symbols = vocab_size * (REFERENCE.embedding_dim + hidden + 1)  # embedding + output
        trained = params + symbols if large_vocabulary else params
        if _enough(seen, trained) and params <= PARAMS_PER_TOKEN * train_tokens:
            break  # the largest that fits both limits; else the smallest
    epochs = seen / max(train_tokens, 1)
    pressure = epochs * params / max(train_tokens, 1)
    settings = {"num_layers": layers, "hidden_size": hidden}
    if large_vocabulary:
        settings.update(LARGE_VOCABULARY)
    if not large_vocabulary or pressure >= LARGE_VOCABULARY_PRESSURE:
        settings.update(next(s for low, s in reversed(REGULARISATION) if pressure >= low))
    # Small corpora: fewer streams, so an epoch has more (noisier) updates.
    settings["batch_size"] = 32 if train_tokens < 300_000 else 64
    # Only in a time budget (a step limit keeps the window its steps were given in), and not yet
    # for a large vocabulary: not measured there.
    few_updates = seen < MIN_UPDATES * settings["batch_size"] * DEFAULT_SEQ_LEN
    if max_chars is None and few_updates and not large_vocabulary:
        settings["seq_len"] = SHORT_SEQ_LEN
    if size:
        del settings["num_layers"], settings["hidden_size"]
    limit = f"{budget_s:.0f} s" if math.isfinite(budget_s) else "the step limit"
    reason = (f"{train_tokens:,} training tokens, vocabulary {vocab_size}, {limit} at "
              f"~{rate:,.0f} chars/s -> {seen / 1e6:.2f}M characters = {epochs:.1f} epochs for "
              f"{params / 1e6:.2f}M recurrent parameters (memorisation pressure {pressure:.1f})")
    if "seq_len" in settings:
        reason += (f", under {MIN_UPDATES:,} steps in windows of {DEFAULT_SEQ_LEN}: windows of "
                   f"{SHORT_SEQ_LEN}")
    if large_vocabulary:
        dropout = "no dropout" if settings["dropout"] == 0 else "dropout at this pressure"
        reason += (f" and {symbols / 1e6:.2f}M embedding and output ones (a large vocabulary: "
                   f"sized by all of them, {dropout}, a higher peak learning rate)")
    return AutoChoice(settings, reason, short_budget_warning(seen, rate, budget_s))


def _enough(seen: float, params: int) -> bool:
    """Whether `seen` training characters train `params` parameters well enough."""
    if seen >= CHARS_PER_PARAM * params:
        return True
    return seen >= ENOUGH_CHARS and seen >= LONG_CHARS_PER_PARAM * params


def short_budget_warning(seen: float, rate: float, budget_s: float) -> str:
    """What to expect when a time budget lets the model see too little text, and the budget
    that would reach USEFUL_CHARS; '' when it is enough (or the limit is not time)."""
    if not math.isfinite(budget_s) or seen >= USEFUL_CHARS:
        return ""
    needed = USEFUL_CHARS / (rate * BUDGET_EFFICIENCY)
    return (f"{_minutes(budget_s)} of training lets this model see {seen / 1e6:.1f}M characters "
            f"at ~{rate:,.0f} chars/s on this machine: expect text that is mostly not words yet; "
            f"--max-time {_minutes(needed)} or more would reach word-like text "
            f"(~{USEFUL_CHARS / 1e6:.0f}M characters)")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 90 else f"{math.ceil(seconds / 60)}m"


def probe_speed(vocab_size: int, batch_size: int, seq_len: int, device, dtype,
                steps: int = 3, model_config: ModelConfig = REFERENCE) -> float:
    """Training characters per second of a model (the reference by default) on this machine:
    one untimed warm-up step, then the median of `steps` timed ones (a shared 2-core VM has
    slow moments; a mean let one of them move the choice), on random ids; the global RNG is
    left as found."""
    import torch
    from torch.nn import functional as F

    from .model import RNNLanguageModel
    from .runtime import autocast

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = RNNLanguageModel(model_config, vocab_size).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        ids = torch.randint(0, vocab_size, (batch_size, seq_len + 1), device=device)
        seconds = []
        for _ in range(steps + 1):
            started = time.perf_counter()
            with autocast(device, dtype):
                logits, _ = model(ids[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.detach().item()  # wait for the device
            seconds.append(time.perf_counter() - started)
        return batch_size * seq_len / statistics.median(seconds[1:])


def measured_speed(vocab_size: int, batch_size: int, seq_len: int, device,
                   dtype) -> tuple[float, float]:
    """-> (the reference model's chars/s, this machine's cost overhead)."""
    if os.environ.get("CHARGEN_NO_PROBE"):
        return NOMINAL_CHARS_PER_S, COST_OVERHEAD
    reference = probe_speed(vocab_size, batch_size, seq_len, device, dtype)
    small = probe_speed(vocab_size, batch_size, seq_len, device, dtype, steps=6,
                        model_config=SMALL)
    return reference, fit_overhead(vocab_size, reference, small)


def fit_overhead(vocab_size: int, reference_rate: float, small_rate: float) -> float:
    """The overhead o for which rate x (parameters + o) is the same for both probed models;
    COST_OVERHEAD when the two rates say nothing (the small model not faster), and at most
    four times it (noise in a short probe must not swing the choice far)."""
    big, small = (estimate_parameters(config, vocab_size) for config in (REFERENCE, SMALL))
    if small_rate <= reference_rate:
        return float(COST_OVERHEAD)
    overhead = (small_rate * small - reference_rate * big) / (reference_rate - small_rate)
    return min(max(overhead, 0.0), 4.0 * COST_OVERHEAD)


def auto_configure(config, given: set[str], train_tokens: int, vocab_size: int, device,
                   check_fits=None):
    """-> (config with the fields not in `given` chosen, a record of the choice for the run's
    meta); logs the choice and the reason. `check_fits(config)` raises when a config's
    training would not fit in memory: it is asked before anything is allocated."""
    from .runtime import resolve_precision

    free = [name for name in AUTO_FIELDS if name not in given]
    if not free:
        return config, None
    data, train = config.data, config.train
    size = None
    if any(name in given for name in (*SIZE_FIELDS, "tie_weights")):
        size = (config.model.num_layers, config.model.hidden_size)
    smallest = size or (WIDE_CANDIDATES if vocab_size >= LARGE_VOCABULARY_SIZE else CANDIDATES)[0]
    # Probed at most at the default batch: the figure is per character, and a huge --batch-size
    # must reach the memory check (after this) rather than fail here.
    probe = {"num_layers": REFERENCE.num_layers, "hidden_size": REFERENCE.hidden_size,
             "batch_size": min(data.batch_size, 64), "seq_len": min(data.seq_len, 100)}
    fits = None
    if check_fits is not None:
        check_fits(_sized(config, smallest))  # nothing we could choose would fit: say so now
        fits = lambda layers, hidden: _fits(check_fits, _sized(config, (layers, hidden)))  # noqa: E731
    started = time.monotonic()
    if check_fits is None or _fits(check_fits, config.with_overrides(probe)):
        rate, overhead = measured_speed(vocab_size, probe["batch_size"], probe["seq_len"],
                                        device, resolve_precision(train.precision, device))
    else:
        rate, overhead = NOMINAL_CHARS_PER_S, COST_OVERHEAD
        log.info("the speed probe's model would not fit in memory: assuming %s chars/s",
                 f"{rate:,.0f}")
    probe_seconds = time.monotonic() - started
    budget = max(train.max_time - probe_seconds, 1.0) if train.max_time is not None else math.inf
    choice = choose(train_tokens, vocab_size, budget, rate, size,
                    chars_limit(train, data, train_tokens), fits, overhead)
    chosen = {k: v for k, v in choice.settings.items() if k in free}
    if data.batching != "stream":
        chosen.pop("seq_len_jitter", None)
        chosen.pop("seq_len", None)  # a window is a sample there, not a stretch of one stream
    config = config.with_overrides(chosen).validate()
    shown = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in chosen.items())
    log.info("auto-config (--no-auto to turn off): %s\n  because: %s", shown, choice.reason)
    if choice.warning:
        log.warning("%s", choice.warning)
    return config, {"chosen": chosen, "reason": choice.reason,
                    "reference_chars_per_s": round(rate), "cost_overhead": round(overhead),
                    "probe_seconds": round(probe_seconds, 3)}


def _sized(config, size: tuple[int, int]):
    return config.with_overrides(dict(zip(SIZE_FIELDS[::-1], size)))


def _fits(check_fits, config) -> bool:
    from .errors import ChargenError

    try:
        check_fits(config)
    except ChargenError:
        return False
    return True


def chars_limit(train, data, train_tokens: int) -> float | None:
    """The training characters a step or epoch limit allows (None: no such limit)."""
    limits = []
    if train.max_steps is not None:
        limits.append(train.max_steps * data.batch_size * data.seq_len)
    if train.epochs is not None:
        limits.append(train.epochs * train_tokens)
    return min(limits) if limits else None
