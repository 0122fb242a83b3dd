"""Watching a run while it trains: a short sample every few steps (appended to samples.jsonl
and shown on stderr) and, with --tensorboard, the metrics and samples as TensorBoard events.

The samples draw from their own seeded generator and leave the model in the mode they found
it in, so training (and a resumed run) follows exactly the path it would without them.
"""

from __future__ import annotations

import math

import torch

from .checkpoint import RunDir
from .config import SampleConfig, TrainConfig
from .errors import ChargenError
from .generate.sample import generate_text

SAMPLES = "samples.jsonl"
TENSORBOARD_DIR = "tensorboard"
SAMPLE_TEMPERATURE = 0.8
PRIME_CHARS = 40
# metrics.jsonl keys -> TensorBoard scalar tags
SCALAR_TAGS = {"train_loss": "loss/train", "val_loss": "loss/validation",
               "val_bpc": "bits_per_char/validation", "lr": "learning_rate",
               "chars_per_s": "chars_per_second"}


def require_tensorboard():
    """-> torch's SummaryWriter class, or a one-line error naming the install command."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ChargenError("--tensorboard needs the tensorboard package: "
                           "pip install 'chargen[tensorboard]'") from None
    return SummaryWriter


def choose_prime(text: str, limit: int = PRIME_CHARS) -> str:
    """The start of the first whole line of `text`, at most `limit` characters, cut after a
    word where it has to be cut."""
    newline = text.find("\n")
    rest = text[newline + 1 :].lstrip("\n") if 0 <= newline < len(text) - 1 else text
    rest = rest or text
    prime = rest[:limit]
    space = prime.rfind(" ")
    if len(rest) > limit and space > limit // 2:
        prime = prime[:space]
    return prime or text[:limit]


class Watch:
    """The trainer's observer: sample_due/sample, record (each metrics record), and a
    context (the TensorBoard writer is open inside it). Does nothing where not `enabled`
    (the ranks other than 0 under torchrun)."""

    def __init__(self, run: RunDir, config: TrainConfig, model: torch.nn.Module, val_ids,
                 enabled: bool = True):
        self.run, self.cfg, self.model, self.enabled = run, config, model, enabled
        self.val_ids = val_ids
        self.writer_class = require_tensorboard() if enabled and config.tensorboard else None
        self.writer = None
        self._prompt = None  # (prime text, tokenizer, prime ids), read on first use

    def __enter__(self) -> Watch:
        if self.writer_class is not None:
            self.writer = self.writer_class(log_dir=str(self.run.file(TENSORBOARD_DIR)))
        return self

    def __exit__(self, *exc) -> bool:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        return False

    def record(self, record: dict) -> None:
        """One metrics.jsonl record, passed on to TensorBoard."""
        if self.writer is None:
            return
        step = record["step"]
        for key, tag in SCALAR_TAGS.items():
            if key in record:
                self.writer.add_scalar(tag, record[key], step)
        if "train_loss" in record:
            self.writer.add_scalar("bits_per_char/train", record["train_loss"] / math.log(2), step)

    def sample_due(self, step: int, evaluated: bool, finished: bool) -> bool:
        every = self.cfg.sample_every
        if not self.enabled or every == 0:
            return False
        return finished or (evaluated if every is None else step % every == 0)

    def sample(self, step: int, elapsed: float, progress=None) -> dict:
        """Generate a short sample from the fixed prime, append it to samples.jsonl, show it
        through `progress` and log it to TensorBoard; -> the record."""
        prime, tokenizer, prompt = self._prime()
        settings = SampleConfig(length=self.cfg.sample_length, temperature=SAMPLE_TEMPERATURE,
                                seed=self.cfg.seed, precision="fp32")
        was_training = self.model.training
        try:
            text = "".join(pieces[0] for pieces in
                           generate_text(self.model, tokenizer, prompt, settings))
        finally:
            self.model.train(was_training)
        record = {"step": step, "time": round(elapsed, 3), "temperature": SAMPLE_TEMPERATURE,
                  "prime": prime, "text": text}
        self.run.append_jsonl(SAMPLES, record)
        if progress is not None:
            progress.sample(step, prime + text)
        if self.writer is not None:
            quoted = "\n".join("    " + line for line in (prime + text).splitlines())
            self.writer.add_text("sample", quoted, step)  # indented: markdown shows it verbatim
        return record

    def _prime(self):
        if self._prompt is None:
            tokenizer = self.run.read_tokenizer()
            if self.model.kind.documents:  # a unit, from [start] to [end]
                from .documents import document_prompt  # from [start], to [end]

                self._prompt = "", tokenizer, document_prompt(tokenizer, "", "error")
                return self._prompt
            head = tokenizer.decode(self.val_ids[: 4 * PRIME_CHARS])
            prime = choose_prime(head)
            ids = torch.from_numpy(tokenizer.encode(prime).astype("int64"))
            self._prompt = prime, tokenizer, ids
        return self._prompt
