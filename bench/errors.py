"""Errors a user can act on.

Every command catches :class:`BenchError` at the top level and prints its message as one
line with exit code 2. Anything else is a bug and is allowed to show a traceback.
"""

from __future__ import annotations


class BenchError(Exception):
    """Bad input or a missing resource, explained in one line."""

    exit_code = 2


class UnknownNameError(BenchError, KeyError):
    """A registry lookup for a name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(BenchError, ValueError):
    """A configuration value that is malformed or out of range."""


class DataError(BenchError):
    """A data file or folder that is missing or has the wrong shape."""


class ScorerError(BenchError):
    """The scorer cannot run (for example, Java is missing)."""


class InputConflict(BenchError):
    """Another run wrote results of other inputs into this run's folder: the run stops (every
    further cell would conflict the same way), it does not go on failing cell after cell."""


class StaleResult(BenchError):
    """A task returned the result of another cell than the one it ran for (a stale result file):
    that cell fails, and nothing is stored under its name."""
