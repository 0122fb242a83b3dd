"""Start a run from a trained one: its model shape, tokenizer and weights, optionally with the
vocabulary grown for new characters and the lower layers frozen."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch

from .checkpoint import RunDir, checkpoint_limit, load_checkpoint
from .config import RunConfig
from .documents import text_tokenizer
from .errors import ConfigError, TokenizerError
from .model import RNNLanguageModel
from .tokenizer import CharTokenizer, Tokenizer

log = logging.getLogger("chargen")
# Without --lr, fine-tuning starts from this fraction of the base run's learning rate.
FINETUNE_LR_FACTOR = 0.25


@dataclass
class Base:
    run: RunDir
    config: RunConfig
    tokenizer: Tokenizer
    weights: dict[str, torch.Tensor]


def load_base(path: str) -> Base:
    run = RunDir(path).check_exists()
    config, tokenizer = run.read_config(), run.read_tokenizer()
    weights, _, _ = load_checkpoint(run.weights_file("best"),
                                    checkpoint_limit(config, tokenizer.vocab_size))
    return Base(run, config, tokenizer, weights)


# Settings a fine-tune never takes from its base: how long to train is about the new corpus,
# the device about this machine, and frozen layers about this fine-tune.
NOT_INHERITED = ("max_steps", "max_time", "epochs", "device", "freeze_layers")


def derive_config(base: Base, overrides: dict) -> RunConfig:
    """The new run's settings: the base run's (its model, how it read text, its framing and its
    optimiser) with the flags on top, the learning rate a quarter of the base's unless given;
    a flag that would reshape the model or change the tokenizer is refused."""
    given = {k: v for k, v in overrides.items() if v is not None}
    for name, value in given.items():
        if hasattr(base.config.model, name) and getattr(base.config.model, name) != value:
            raise ConfigError(f"--{name.replace('_', '-')} {value} conflicts with the base run's "
                              f"{getattr(base.config.model, name)}: --init-from keeps the model "
                              "shape; drop the flag")
    if given.get("tokenizer", base.config.data.tokenizer) != base.config.data.tokenizer:
        raise ConfigError("--tokenizer conflicts with the base run's; --init-from keeps it")
    given.setdefault("lr", base.config.train.lr * FINETUNE_LR_FACTOR)
    defaults = RunConfig().train
    reset = {name: getattr(defaults, name) for name in NOT_INHERITED}
    inherited = dataclasses.replace(base.config, train=dataclasses.replace(base.config.train, **reset))
    return inherited.with_overrides(given).validate()


def fine_tune_tokenizer(base: Base, corpus_tokenizer: Tokenizer, extend: bool | None,
                        unknown: str) -> Tokenizer:
    """The base vocabulary, grown by the corpus's new characters with `extend` (None: where
    the base has an embedding input and unknown is not 'replace'); otherwise new characters
    are an error, or (unknown='replace') trained as the unknown id. A document run's markers
    are left to documents.with_markers, which appends them after the text ids."""
    known = text_tokenizer(base.tokenizer)
    if not isinstance(known, CharTokenizer):
        return known
    new = sorted(set(corpus_tokenizer.chars) - set(known.chars))
    if not new:
        return known
    encoding = base.config.model.input_encoding
    if extend is None:
        extend = encoding == "embedding" and unknown != "replace"
    if extend and encoding != "embedding":
        raise ConfigError(f"--extend-vocab needs a base run with an embedding input: its "
                          f"{encoding} input is sized by the vocabulary;"
                          " train the new characters as unknown with --unknown replace")
    if extend:
        log.warning("adding %d characters the base run never saw to the vocabulary: %s",
                    len(new), " ".join(repr(c) for c in new[:40]))
        return CharTokenizer(known.chars + new)
    if unknown == "replace":
        log.warning("%d characters the base run never saw are trained as [UNK]: %s", len(new),
                    "".join(new)[:80])
        return known
    shown = " ".join(repr(c) for c in new[:20])
    fix = ("leave out --no-extend-vocab to add them, or" if encoding == "embedding" else
           f"a {encoding} input is sized by its vocabulary, so they cannot be added:")
    raise TokenizerError(f"the corpus has {len(new)} characters the base run never saw: {shown};"
                         f" {fix} train them as unknown with --unknown replace")


def initial_weights(base: Base, tokenizer: Tokenizer) -> dict[str, torch.Tensor]:
    """The base weights with the vocabulary rows moved to the new ids. New characters get the
    mean embedding and output row, and the lowest output bias, so they start unlikely; a
    document run's two markers, the last ids of both vocabularies, keep their rows."""
    old, new = text_tokenizer(base.tokenizer), text_tokenizer(tokenizer)
    if not isinstance(new, CharTokenizer) or new.chars == old.chars:
        return base.weights
    old_ids = {c: i + 1 for i, c in enumerate(old.chars)}
    source = torch.tensor([old.unknown_id, *(old_ids.get(c, -1) for c in new.chars),
                           *range(old.vocab_size, base.tokenizer.vocab_size)])
    weights = dict(base.weights)
    for name in ("embedding.weight", "head.weight", "head.bias"):
        old_rows = base.weights[name]
        fill = old_rows.min() if name == "head.bias" else old_rows.mean(dim=0)
        grown = fill.expand(len(source), *old_rows.shape[1:]).clone()
        known = source >= 0
        grown[known] = old_rows[source[known]]
        weights[name] = grown
    return weights


def freeze_lower_layers(model: RNNLanguageModel, layers: int) -> None:
    """No gradient for the embedding and the first `layers` recurrent layers."""
    if layers <= 0:
        return
    if layers > model.config.num_layers:
        raise ConfigError(f"--freeze-layers {layers} is more than the model's "
                          f"{model.config.num_layers} layers")
    for name, parameter in model.named_parameters():
        suffix = name.rsplit("_l", 1)[-1]
        in_frozen_layer = name.startswith("rnn.") and suffix.isdigit() and int(suffix) < layers
        if name.startswith("embedding.") or in_frozen_layer:
            parameter.requires_grad_(False)


def provenance(base: Base, tokenizer: Tokenizer) -> dict:
    extended = text_tokenizer(tokenizer).vocab_size > text_tokenizer(base.tokenizer).vocab_size
    return {"init_from": str(base.run.path), "extended_vocab": extended,
            "base_model": dataclasses.asdict(base.config.model)}
