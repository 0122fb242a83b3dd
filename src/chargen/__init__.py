"""chargen: train LSTM/GRU language models on any text and generate from them.

The API is imported lazily so that `chargen --help` does not pay for importing torch.
"""

from importlib import import_module

__version__ = "0.1.0"

__all__ = [
    "ChargenError",
    "CheckpointError",
    "ConfigError",
    "CorpusError",
    "DataConfig",
    "LanguageModel",
    "ModelConfig",
    "RunConfig",
    "SampleConfig",
    "TokenizerError",
    "TrainConfig",
    "TrainResult",
    "evaluate_text",
    "load",
    "load_corpus",
    "train",
]

_HOMES = {
    "ChargenError": "errors",
    "CheckpointError": "errors",
    "ConfigError": "errors",
    "CorpusError": "errors",
    "TokenizerError": "errors",
    "DataConfig": "config",
    "ModelConfig": "config",
    "RunConfig": "config",
    "SampleConfig": "config",
    "TrainConfig": "config",
    "load_corpus": "corpus",
    "LanguageModel": "api",
    "TrainResult": "api",
    "evaluate_text": "api",
    "load": "api",
    "train": "api",
}


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'chargen' has no attribute {name!r}")
    return getattr(import_module(f"chargen.{_HOMES[name]}"), name)


def __dir__():
    return sorted(__all__)
