"""A trained run loaded for generation and evaluation (chargen.load): the one generation loop
behind sample() and generate(), the loss on a text, and what a run directory holds."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from . import plot
from .checkpoint import LAST, RunDir, checkpoint_info, checkpoint_limit, fit_weights, load_checkpoint
from .config import AdaptConfig, RunConfig, SampleConfig
from .corpus import load_corpus
from .documents import document_prompt, document_unit
from .dynamic import adapted_copy
from .errors import ConfigError
from .evaluate import Evaluation, evaluate_ids
from .generate.beam import beam_search
from .generate.sample import generate_text
from .kinds import kind_of
from .model import RNNLanguageModel, estimate_parameters
from .pieces import SampleMethods
from .runtime import resolve_device
from .tokenizer import encode_prompt

PRIME_TRIES = 20  # random slices tried for one without the unknown token


def line_start_slice(window: np.ndarray, length: int, decode) -> np.ndarray:
    """`length` ids of `window` from just after the first token that holds a line break
    among its first `length`, or from its start when none does."""
    for index in range(min(length, len(window))):
        if "\n" in decode(window[index : index + 1]):
            after = window[index + 1 : index + 1 + length]
            return after if len(after) else window[:length]
    return window[:length]


class LanguageModel(SampleMethods):
    """A trained run, loaded for generation and evaluation."""

    def __init__(self, net: RNNLanguageModel, tokenizer, config: RunConfig, run: RunDir):
        self.net, self.tokenizer, self.config, self.run = net, tokenizer, config, run

    @property
    def history(self) -> list[dict]:
        """The run's metrics as records (metrics.jsonl)."""
        return plot.history(self.run.path)

    def plot(self):
        """The run's loss curves as a matplotlib figure (inline in a notebook)."""
        return plot.loss_figure([str(self.run.path)])

    def _summary(self) -> list[tuple[str, str]]:
        model = self.config.model
        rows = [("model", f"{model.cell.upper()} {model.num_layers}x{model.hidden_size}, "
                          f"{estimate_parameters(model, self.net.vocab_size):,} parameters"),
                ("vocabulary", f"{self.net.vocab_size:,} ({self.tokenizer.kind})"),
                ("kind", self.net.kind.batching)]
        best = [r["val_loss"] for r in self.history if r.get("best") and "val_loss" in r]
        if best:
            rows.append(("best validation", f"{min(best):.4f} nats"))
        return rows

    def __repr__(self) -> str:
        shown = ", ".join(f"{name} {value}" for name, value in self._summary())
        return f"<chargen model {self.run.path}: {shown}>"

    def _repr_html_(self) -> str:
        return plot.summary_html(f"chargen model {self.run.path}", self._summary(), self.run.path)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def document_unit(self) -> str | None:
        """line, sentence or paragraph for a document run (each sample is one), else None."""
        return document_unit(self.tokenizer)

    def encode_prompt(self, prime: str, unknown: str = "error") -> torch.Tensor:
        """Prompt -> ids. Characters the model never saw: 'error' (list them), 'replace'
        (the unknown id) or 'skip' (drop them)."""
        ids = encode_prompt(self.tokenizer, prime, unknown)
        return torch.from_numpy(ids.astype(np.int64))

    def prompt_ids(self, prime: str, unknown: str = "error") -> torch.Tensor:
        """The ids generation starts from: the prime's (a document run's begin with [start])."""
        if self.net.kind.documents:
            return document_prompt(self.tokenizer, prime, unknown)
        return self.encode_prompt(prime, unknown)

    def random_prime(self, seed: int | None = None, length: int | None = None) -> str:
        """A slice of the training text starting at a line start (tutorial B's random seed),
        cut at whole tokens: 64 of them, or a whole window for window models. Slices holding
        the unknown token (rare words or characters the vocabulary left out) are passed over."""
        return self.random_primes(1, seed, length)[0]

    def random_primes(self, num: int, seed: int | None = None,
                      length: int | None = None) -> list[str]:
        """`num` such slices, each drawn afresh (the first is random_prime's for this seed)."""
        if self.net.kind.documents:  # samples start at [start]: a whole unit each
            return [""] * num
        length = length or self.net.kind.prime_tokens
        ids = self.run.read_ids()
        usable = len(ids) - int(len(ids) * self.config.data.val_fraction)
        rng = np.random.default_rng(seed)
        return [self._slice(ids, usable, length, rng) for _ in range(num)]

    def _slice(self, ids, usable: int, length: int, rng: np.random.Generator) -> str:
        unknown = self.tokenizer.unknown_id
        for _ in range(PRIME_TRIES):
            start = int(rng.integers(0, max(1, usable - 2 * length)))
            prime = line_start_slice(np.asarray(ids[start : start + 2 * length]), length,
                                     self.tokenizer.decode)
            if not (prime == unknown).any():
                break
        # a cut inside a UTF-8 sequence (byte runs) decodes to U+FFFD at the ends
        return self.tokenizer.decode(prime[prime != unknown]).strip("\ufffd")

    def generate_batch(self, prime: str | Sequence[str] | None = None,
                       **settings: Any) -> Iterator[list[str]]:
        """Yields one text piece per sample per step; settings are SampleConfig fields.
        `prime`: one text for every sample, one per sample (a list of num), or None: random
        slices of the training text, a different one for each sample."""
        config = SampleConfig(**settings).validate()
        if prime is None:
            prime = self.random_primes(config.num, config.seed)
            prime = prime[0] if config.num == 1 or config.beam or self.net.kind.documents else prime
        if isinstance(prime, str):
            prompt = self.prompt_ids(prime, config.unknown)
        else:
            prompt = self._prompts(list(prime), config)
        if config.beam:  # the search ends before any text is final: one piece per sample
            yield [h.text for h in beam_search(self.net, self.tokenizer, prompt, config)]
            return
        yield from generate_text(self.net, self.tokenizer, prompt, config)

    def _prompts(self, primes: list[str], config: SampleConfig) -> list[torch.Tensor]:
        if len(primes) != config.num or not all(isinstance(p, str) for p in primes):
            raise ConfigError(f"prime: one text, or a list of one text per sample (num="
                              f"{config.num}; got {len(primes)} items)")
        if config.beam:
            raise ConfigError("beam search continues one prompt: give one prime")
        return [self.prompt_ids(p, config.unknown) for p in primes]

    def evaluate(self, text: str, allow_unknown: bool = False, dynamic: bool = False,
                 **adapt: Any) -> Evaluation:
        """Loss on `text`. Characters the run never saw are scored as its unknown id, which
        makes the figure incomparable: above UNKNOWN_LIMIT of the text (char level) this is
        refused unless `allow_unknown`; the share is in the result either way. `dynamic`:
        the loss while a copy of the weights adapts to the text as it is read (dynamic.py;
        `adapt`: AdaptConfig's settings); the run's weights are not changed."""
        settings = _adapt_settings(adapt, dynamic, "dynamic=True")
        ids = self.tokenizer.encode(text)
        unknown = int(np.count_nonzero(ids == self.tokenizer.unknown_id))
        if self.tokenizer.kind == "char" and not allow_unknown:
            _check_unknown_share(unknown, len(ids), lambda: self.tokenizer.unknown_chars(text))
        if self.document_unit and not dynamic:
            result = self._evaluate_documents(ids)
        else:
            if dynamic:
                self._check_stream("dynamic evaluation")
            if len(ids) < 2:
                raise ConfigError(f"the text to evaluate needs at least two {self.tokenizer.unit}s")
            if dynamic:
                _, result = adapted_copy(self.net, ids, settings, self.device)
            else:
                result = evaluate_ids(self.net, ids, self.config.data.seq_len, self.device)
            # Per character too (for word tokens): total nats over the characters scored.
            covered = len(self.tokenizer.decode(ids[1 : result.tokens + 1]))
            result = dataclasses.replace(result, characters=covered, unit=self.tokenizer.unit)
        return dataclasses.replace(result, unknown=unknown, text_tokens=len(ids))

    def adapt(self, text: str, **adapt: Any) -> LanguageModel:
        """A copy of this model whose weights have read `text` as dynamic evaluation does
        (AdaptConfig's settings), to generate in its style; this model is not changed."""
        settings = _adapt_settings(adapt, True, "")
        self._check_stream("adapting to a text")
        ids = encode_prompt(self.tokenizer, text, "skip")
        if len(ids) < 2:
            raise ConfigError(f"the text to adapt to needs at least two {self.tokenizer.unit}s "
                              "the run knows")
        net, _ = adapted_copy(self.net, ids, settings, self.device)
        return LanguageModel(net, self.tokenizer, self.config, self.run)

    def _check_stream(self, what: str) -> None:
        """Adapting reads the text as one stream with the state carried: not a window or
        document run's way of reading."""
        if self.net.kind.windowed or self.net.kind.documents:
            raise ConfigError(f"{what} reads the text as one stream with the state carried; a "
                              f"{self.net.kind.batching} run reads its text otherwise: use a "
                              "stream or sequences run")

    def _evaluate_documents(self, ids: np.ndarray) -> Evaluation:
        """Per token over the text's units, each read from [start], [end] predictions included;
        per character over the text's characters."""
        from .documents import documents_of

        docs = documents_of(ids, self.tokenizer, self.document_unit)
        if not docs.units:
            raise ConfigError(f"the text to evaluate holds no {self.document_unit}")
        result = evaluate_ids(self.net, docs, self.config.data.seq_len, self.device)
        return dataclasses.replace(result, characters=len(self.tokenizer.decode(ids)),
                                   unit=self.tokenizer.unit)


def _adapt_settings(adapt: dict, wanted: bool, needs: str) -> AdaptConfig:
    if adapt and not wanted:
        raise ConfigError(f"{', '.join(sorted(adapt))} apply only with {needs}")
    known = [field.name for field in dataclasses.fields(AdaptConfig)]
    unknown = sorted(set(adapt) - set(known))
    if unknown:
        raise ConfigError(f"unknown adapt setting(s): {', '.join(unknown)} (known: "
                          f"{', '.join(known)})")
    return AdaptConfig(**adapt).validate()


UNKNOWN_LIMIT = 0.01  # of the text's tokens: more unseen characters than this are refused


def _check_unknown_share(unknown: int, tokens: int, unseen) -> None:
    """`unseen()` lists the characters, asked only for the message (it reads the text again)."""
    if tokens and unknown / tokens > UNKNOWN_LIMIT:
        missing = unseen()
        shown = ", ".join(repr(c) for c in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ConfigError(
            f"{unknown:,} of the text's {tokens:,} characters ({unknown / tokens:.1%}) are ones the "
            f"run never saw ({shown}): scored as unknown, the loss would not be comparable; "
            "evaluate text like the training corpus, or pass --allow-unknown")


def load(path: str, which: str = "best", device: str = "auto") -> LanguageModel:
    """Load a run directory for generation: `which` is best (default) or last."""
    run = RunDir(path).check_exists()
    config = run.read_config()
    tokenizer = run.read_tokenizer()
    net = RNNLanguageModel(config.model, tokenizer.vocab_size,
                           kind_of(config.data, tokenizer.vocab_size))
    weights, _, _ = load_checkpoint(run.weights_file(which),
                                    checkpoint_limit(config, tokenizer.vocab_size))
    fit_weights(net, weights, run.path)
    return LanguageModel(net.to(resolve_device(device)).eval(), tokenizer, config, run)


def run_info(path: str) -> dict[str, Any]:
    """What a run directory holds: settings, parameters, corpus, progress, files."""
    run = RunDir(path).check_exists()
    meta = run.read_meta()
    config = run.read_config()
    vocab_size = run.read_tokenizer().vocab_size
    info: dict[str, Any] = {
        "run": str(run.path), "chargen_version": meta.get("chargen_version"),
        "parameters": estimate_parameters(config.model, vocab_size), "vocabulary": vocab_size,
        "config": config.to_dict(), "corpus": meta.get("corpus", {}),
        "files": {p.name: p.stat().st_size for p in sorted(run.path.iterdir())
                  if p.is_file() and not p.name.startswith(".")},
    }
    if run.file(LAST).exists():
        progression = checkpoint_info(run.file(LAST), checkpoint_limit(config, vocab_size)).get(
            "progression", {})
        info.update(steps=progression.get("step"), seconds_trained=progression.get("elapsed"),
                    best_val=progression.get("best_val"), best_step=progression.get("best_step"))
    return info


def evaluate_text(path: str, text_paths: list[str] | str, allow_unknown: bool = False,
                  dynamic: bool = False, **adapt: Any) -> Evaluation:
    """Loss of a trained run on some text, cleaned as the run's corpus was (`dynamic`, `adapt`:
    as LanguageModel.evaluate)."""
    model = load(path)
    return model.evaluate(read_text(model, text_paths), allow_unknown, dynamic, **adapt)


def read_text(model: LanguageModel, text_paths: list[str] | str) -> str:
    """Files or directories of text, cleaned as the run's corpus was."""
    data = model.config.data
    return load_corpus(text_paths, data.encoding, data.normalize_newlines, data.strip_gutenberg,
                       data.lowercase, data.strip_punctuation).text
