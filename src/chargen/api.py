"""The public Python API: train a run, load it, generate and evaluate. The CLI calls only this."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .autoconfig import auto_configure
from .checkpoint import (
    LAST,
    RunDir,
)
from .config import RunConfig
from .config import preset as named_preset
from .corpus import Corpus, empty_corpus, open_corpus
from .data import split_sizes
from .distributed import World, from_main, join
from .documents import split_run_ids, with_markers
from .errors import ChargenError, ConfigError
from .finetune import (
    derive_config,
    fine_tune_tokenizer,
    freeze_lower_layers,
    initial_weights,
    load_base,
    provenance,
)
from .framing import context_length, steps_per_example
from .idcache import find_run_with, fingerprint
from .kinds import kind_of
from .language_model import LanguageModel, evaluate_text, load, run_info
from .model import (
    RNNLanguageModel,
    count_parameters,
    estimate_parameters,
    estimate_training_bytes,
)
from .progress import shows_progress
from .resources import check_fits
from .result import TrainResult
from .run_state import check_steps_left, time_budget
from .runlock import RunLock
from .runtime import resolve_precision, seed_everything
from .threads import ThreadGovernor
from .tokenizer import TextStats, narrowest_dtype, scan
from .trainer import Trainer
from .watch import require_tensorboard

__all__ = ["LanguageModel", "TrainResult", "evaluate_text", "load", "run_info", "train"]

log = logging.getLogger("chargen")
DEFAULT_MAX_TIME = 600.0
# Settings that shape the weights or the data order: on resume they come from the run.
_FIXED_ON_RESUME = ("model", "data")


@shows_progress
def train(corpus: str | list[str] | Corpus | None = None, out: str | None = None, *,
          resume: str | None = None, init_from: str | None = None, extend_vocab: bool | None = None,
          unknown: str = "error", config: RunConfig | None = None, quiet: bool = False,
          auto: bool = True, more: float | str | None = None, preset: str | None = None,
          **overrides: Any) -> TrainResult:
    """Train a new run on `corpus` (paths, builtin:NAME or a Corpus), or continue `resume`.
    Keyword overrides name RunConfig fields, e.g. hidden_size=256, max_time=600.
    `init_from` starts from a trained run's weights (fine-tuning): characters it never saw
    are added to its vocabulary where it has an embedding input (`extend_vocab=False`: an
    error instead), or trained as unknown with unknown='replace'.
    `auto` (as on the command line) chooses the model size, regularisation and batch the
    overrides leave open (autoconfig.py); the choice is stored in the run's config.json. A
    whole `config`, like a preset, is taken as it is; so is a fine-tuning base's.
    `preset` names a tutorial's recipe (`chargen presets`), the overrides on top; as on the
    command line it turns auto-configuration off.
    `more` (with `resume`): train this much longer (seconds, or a duration such as "5m") than
    the run has trained so far; a `max_time` counts from the run's start."""
    if preset is not None:
        if resume is not None or config is not None:
            raise ConfigError("preset= starts a new run from a recipe: leave out resume= and config=")
        overrides, auto = {**named_preset(preset), **overrides}, False
    if resume is not None:
        return _resume(resume, overrides, quiet, more)
    if more is not None:
        raise ConfigError("more= continues a run: give resume= too (a new run takes max_time)")
    base = load_base(init_from) if init_from is not None else None
    choosing = auto and base is None and config is None  # a whole config or a base is kept
    if base is not None:
        config = derive_config(base, overrides)
        if (config.data.batching == "documents") != (base.config.data.batching == "documents"):
            raise ConfigError("--batching documents gives a model two more ids than other runs:"
                              " --init-from keeps the base run's (drop --batching)")
    else:
        config = (config or RunConfig()).with_overrides(overrides).validate()
    if config.train.max_steps is None and config.train.epochs is None and config.train.max_time is None:
        config = config.with_overrides({"max_time": DEFAULT_MAX_TIME})
        log.info("no --max-steps, --epochs or --max-time given: training for %d minutes",
                 DEFAULT_MAX_TIME // 60)
    if config.train.tensorboard:
        require_tensorboard()  # a missing optional package is reported before any work
    world, device = join(config.train.device)
    governor = _governor(config, device)
    if not world.is_main:
        log.setLevel(logging.WARNING)
    outcome, error, lock = None, None, None
    if world.is_main:
        try:
            given = {k for k, v in overrides.items() if v is not None} if choosing else None
            path, lock = _prepare_run(corpus, out, config, base, extend_vocab, unknown, device,
                                      given, governor)
            outcome = ("ok", str(path))
        except ChargenError as err:
            outcome, error = ("error", str(err)), err
    outcome = from_main(outcome, world)  # the other ranks wait for rank 0's run directory
    if outcome[0] == "error":
        raise error or ChargenError(outcome[1])
    with lock or contextlib.nullcontext():  # rank 0 writes the run: it holds the lock
        return _train_new(RunDir(outcome[1]), config, base, choosing, quiet, world, device,
                          governor)


def _train_new(run: RunDir, config: RunConfig, base, choosing: bool, quiet: bool, world: World,
               device, governor: ThreadGovernor | None) -> TrainResult:
    spent = 0.0
    if choosing:  # rank 0 chose; every rank takes its choice from the run directory
        config = run.read_config()
        spent = run.read_meta()["corpus"].get("auto_config", {}).get("probe_seconds", 0.0)
    try:
        tokenizer = run.read_tokenizer()
        train_ids, val_ids = split_run_ids(run.read_ids(), config.data, tokenizer)
        init = initial_weights(base, tokenizer) if base is not None else None
        trainer = _build_trainer(config, tokenizer.vocab_size, train_ids, val_ids, run, quiet,
                                 init, world, device, governor, spent)
    except BaseException:
        if world.is_main:
            run.discard()  # rank 0 created it a moment ago: nothing of the user's is in it
        raise
    log.info("run directory: %s", run.path)
    return _fit(trainer)


def _governor(config: RunConfig, device) -> ThreadGovernor | None:
    """The CPU thread count for this run (threads.py); None on a GPU."""
    return ThreadGovernor(config.train.threads) if device.type == "cpu" else None


def _prepare_run(corpus, out, config: RunConfig, base, extend_vocab: bool | None, unknown: str,
                 device, auto_given: set[str] | None = None,
                 governor: ThreadGovernor | None = None) -> tuple[Path, RunLock]:
    """Read and tokenize the corpus, check the split and the memory, and write a new run
    directory with ids.npy, tokenizer.json and config.json; -> its path and the lock on it
    (held from the moment the directory exists)."""
    if out is not None:
        RunDir.check_free(out)
    stream = _as_stream(corpus or "builtin:python-docs", config)
    target = Path(out) if out is not None else Path("runs") / stream.name
    corpus_print = fingerprint(stream, config.data) if base is None else None
    cached = find_run_with(corpus_print, target.parent)
    if cached is not None:
        log.info("reusing the token ids of %s (the corpus is unchanged)", cached.path)
        tokenizer, stats = cached.read_tokenizer(), _cached_stats(cached)
    else:
        tokenizer, stats = scan(config.data.tokenizer, stream.chunks(), config.data.min_count,
                                config.data.max_vocab)
    if base is not None:
        tokenizer = fine_tune_tokenizer(base, tokenizer, extend_vocab, unknown)
    tokenizer = with_markers(tokenizer, config.data)  # document mode's [start] and [end]
    if not stats.has_text:
        raise empty_corpus(stream)
    n_train, n_val = split_sizes(stats.tokens, config.data.val_fraction,
                                 context_length(config.data))
    log.info("corpus %s: %s characters, %s distinct; %s tokens (vocabulary %d): %s train, %s "
             "validation", stream.name, f"{stats.characters:,}", f"{stats.distinct:,}",
             f"{stats.tokens:,}", tokenizer.vocab_size, f"{n_train:,}", f"{n_val:,}")
    auto_record = None
    if auto_given is not None:
        if governor is not None:
            governor.check()  # the speed probe runs on the cores that are free
        config, auto_record = auto_configure(
            config, auto_given, n_train, tokenizer.vocab_size, device,
            lambda candidate: _check_model_fits(candidate, tokenizer.vocab_size, device))
    _check_model_fits(config, tokenizer.vocab_size, device)
    run = RunDir.fresh(target, exist_ok_name=out is None)
    lock = RunLock(run.path).acquire()  # a second writer that raced us here stops now
    try:
        if cached is not None:
            run.link_ids(cached)
        else:
            run.write_ids(tokenizer.encode_chunks(stream.chunks()), stats.tokens,
                          narrowest_dtype(tokenizer.vocab_size))
        run.write_setup(config, tokenizer, {
            "name": stream.name, "sources": list(stream.sources),
            "characters": stats.characters, "distinct_characters": stats.distinct,
            "train_tokens": n_train, "val_tokens": n_val, "fingerprint": corpus_print,
            **(provenance(base, tokenizer) if base is not None else {}),
            **({"auto_config": auto_record} if auto_record else {}),
        })
    except BaseException:
        run.discard()
        lock.release()
        raise
    return run.path, lock


def _cached_stats(run: RunDir) -> TextStats:
    corpus = run.read_meta()["corpus"]
    return TextStats(characters=corpus["characters"], distinct=corpus["distinct_characters"],
                     tokens=corpus["train_tokens"] + corpus["val_tokens"], has_text=True)


@dataclass(frozen=True)
class _TextStream:
    """A Corpus already in memory, read as a stream of one piece."""

    corpus: Corpus

    name = property(lambda self: self.corpus.name)
    sources = property(lambda self: self.corpus.sources)

    def chunks(self):
        yield self.corpus.text


def _as_stream(corpus, config: RunConfig):
    if isinstance(corpus, Corpus):
        return _TextStream(corpus)
    data = config.data
    return open_corpus(corpus, data.encoding, data.normalize_newlines, data.strip_gutenberg,
                       data.lowercase, data.strip_punctuation)


def _build_trainer(config: RunConfig, vocab_size: int, train_ids, val_ids, run, quiet,
                   init_weights, world: World, device,
                   governor: ThreadGovernor | None = None, spent: float = 0.0) -> Trainer:
    seed_everything(config.train.seed)
    dtype = resolve_precision(config.train.precision, device)
    model = RNNLanguageModel(config.model, vocab_size, kind_of(config.data, vocab_size))
    if init_weights is not None:
        model.load_state_dict(init_weights)
    freeze_lower_layers(model, config.train.freeze_layers)
    model.to(device)
    inputs = config.model.input_encoding
    inputs = f"embedding {config.model.embedding_dim}" if inputs == "embedding" else f"{inputs} input"
    log.info("model: %s %dx%d, %s, %s parameters; %s, %s", config.model.cell.upper(),
             config.model.num_layers, config.model.hidden_size, inputs,
             f"{count_parameters(model):,}", device, "fp32" if dtype is None else str(dtype)[6:])
    return Trainer(model, config, train_ids, val_ids, run, device, dtype, quiet, world, governor,
                   spent)


def _check_model_fits(config: RunConfig, vocab_size: int, device) -> None:
    params = estimate_parameters(config.model, vocab_size)
    needed = estimate_training_bytes(config.model, vocab_size, config.data.batch_size,
                                     steps_per_example(config.data))
    check_fits(needed, f"training a {params:,}-parameter model on batches of "
               f"{config.data.batch_size} x {config.data.seq_len}",
               "use a smaller --hidden-size, --num-layers, --batch-size or --seq-len", device)


def _fit(trainer: Trainer) -> TrainResult:
    p = trainer.fit()
    return TrainResult(trainer.run.path, p.step, p.elapsed, p.best_val, p.best_step,
                       p.best_train, p.best_train_step)


def _resume(path: str, overrides: dict[str, Any], quiet: bool, more) -> TrainResult:
    run = RunDir(path).check_exists()
    config = run.read_config()
    given = {k: v for k, v in overrides.items() if v is not None}
    given.update(time_budget(run, config, given.get("max_time"), more))
    for section in _FIXED_ON_RESUME:
        current = getattr(config, section)
        for name, value in given.items():
            if hasattr(current, name) and getattr(current, name) != value:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} {value} conflicts with the run's {getattr(current, name)}:"
                                  f" {section} settings come from the run; drop the flag or start "
                                  "a new run")
    config = config.with_overrides(given).validate()
    if more is not None:  # a time budget: the run's step or epoch limit no longer applies
        limits = {k: given.get(k) for k in ("max_steps", "epochs")}
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, **limits))
    world, device = join(config.train.device)
    lock = RunLock(run.path).acquire() if world.is_main else None  # before touching any file
    with lock or contextlib.nullcontext():
        return _resume_locked(run, config, quiet, world, device)


def _resume_locked(run: RunDir, config: RunConfig, quiet: bool, world: World,
                   device) -> TrainResult:
    governor = _governor(config, device)
    if world.is_main:
        run.remove_temporaries()
    else:
        log.setLevel(logging.WARNING)
    tokenizer = run.read_tokenizer()
    train_ids, val_ids = split_run_ids(run.read_ids(), config.data, tokenizer)
    vocab_size = tokenizer.vocab_size
    _check_model_fits(config, vocab_size, device)
    trainer = _build_trainer(config, vocab_size, train_ids, val_ids, run, quiet, None, world,
                             device, governor)
    if run.file(LAST).exists():
        trainer.restore()
        check_steps_left(run, trainer.progression.step, config.train.max_steps)
        if trainer.decayed():
            raise ConfigError(f"{run.path} ended at step {trainer.progression.step:,}: its "
                              "validation loss stopped improving, and the learning rate decayed "
                              "early (--patience); to train more, pass --more TIME or a larger "
                              "--max-steps")
        log.info("resuming %s at step %d", run.path, trainer.progression.step)
    return _fit(trainer)
