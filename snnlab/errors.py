"""The errors snnlab reports to users, each saying where the problem is and what was expected."""

from __future__ import annotations

from collections.abc import Sequence


class SnnlabError(Exception):
    """Base of every error that the CLI reports as a message (exit code 2) instead of a traceback."""


class ConfigError(SnnlabError):
    """A bad experiment configuration: names the file, each offending key path and what was expected."""

    def __init__(self, issues: Sequence[tuple[str, str]], source: str | None = None) -> None:
        self.issues = list(issues)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.source}: " if self.source else ""
        lines = [f"{where}{path}: {message}" if path else f"{where}{message}" for path, message in self.issues]
        return "\n".join(lines)

    def with_source(self, source: str) -> ConfigError:
        """The same error, attributed to the file it came from."""
        return ConfigError(self.issues, source)


class UnsupportedNetwork(SnnlabError):
    """A rule cannot train a network: names the block and the reason."""


class MissingDataError(SnnlabError):
    """A dataset's files are not under the data root: names the files, where they go and where to fetch them."""


class DataFileError(SnnlabError):
    """A data file cannot be read (truncated, damaged, not the expected format): names the file."""

    def __init__(self, message: str) -> None:
        # Re-raised from a DataLoader worker, the message is the worker's whole traceback: keep the error's own line.
        own = f"{__name__}.{type(self).__name__}: "
        if message.startswith("Caught ") and own in message:
            message = message.rsplit(own, 1)[1].strip() + " (in a DataLoader worker)"
        super().__init__(message)


class Interrupted(SnnlabError):
    """The run was stopped by Ctrl-C (exit code 130) or SIGTERM (143, what batch schedulers send); the message says
    where to resume it from."""

    def __init__(self, message: str, code: int = 130) -> None:
        super().__init__(message)
        self.code = code


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM, so that it stops like Ctrl-C."""
