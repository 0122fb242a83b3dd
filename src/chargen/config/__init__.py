"""Settings: frozen, typed dataclasses, each field declared once with its command-line help
(fields.py), validated by one set of checks (checks.py) for the CLI, the API, config files and
the server alike; the named presets (presets.py)."""

from .adapt import AdaptConfig
from .checks import (
    SCALE_RANGE,
    SEED_LIMIT,
    check_encoding,
    check_types,
    check_whole,
    parse_duration,
    parse_size,
)
from .presets import PRESET_NOTES, PRESETS, preset
from .run import (
    BATCHINGS,
    FORMAT_VERSION,
    WINDOWED,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from .sample import SampleConfig
from .serve import ServeLimits

__all__ = ["AdaptConfig", "BATCHINGS", "FORMAT_VERSION", "PRESETS",
           "PRESET_NOTES", "SCALE_RANGE", "SEED_LIMIT",
           "WINDOWED", "DataConfig", "ModelConfig", "RunConfig", "SampleConfig", "ServeLimits",
           "TrainConfig",
           "check_encoding", "check_types", "check_whole", "parse_duration", "parse_size",
           "preset"]
