"""One exception hierarchy; the CLI turns each into a one-line message and an exit code."""


class ChargenError(Exception):
    """A problem the user can fix; the message says what happened and what to do."""

    exit_code = 1


class ConfigError(ChargenError):
    """An invalid setting or flag (a usage error)."""

    exit_code = 2


class CorpusError(ChargenError):
    """Text that cannot be read, decoded or used for training."""


class TokenizerError(ChargenError):
    """Text the tokenizer cannot encode, or a malformed tokenizer file."""


class CheckpointError(ChargenError):
    """A run directory or checkpoint that is missing, malformed or inconsistent."""


class ResourceError(ChargenError):
    """Work that would not fit in memory (refused before allocating)."""


class UsageError(ChargenError):
    """Command-line arguments that do not go together (exit status 2, as argparse's)."""

    exit_code = 2


class RunBusy(ChargenError):
    """A run directory another chargen process is writing (one writer per run)."""


class Busy(ChargenError):
    """The server's bounded queue is full: the request is refused (HTTP 503)."""
