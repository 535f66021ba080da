"""One exception hierarchy for everything a user can cause.

Every message has the form "expected X, got Y in FIELD" (plus the fix where there is one), so the
CLI can print it as one line on stderr and exit 2.
"""

from __future__ import annotations


class RobenchError(Exception):
    """Root of every error a user can cause (bad config, malformed file, unknown name, ...)."""


class ConfigError(RobenchError):
    """A configuration value (CLI option, YAML field, dataclass field) is invalid."""


class DataError(RobenchError):
    """A data file or tensor is malformed: wrong shape, NaN/inf, labels out of range, ..."""


class UnknownNameError(RobenchError, KeyError):
    """A registry lookup failed; the message lists the closest registered names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(RobenchError):
    """A checkpoint cannot be trusted: missing metadata, sha256 mismatch, wrong architecture."""


class AccessError(RobenchError):
    """An attack asked for more knowledge than its declared level grants."""


class ThreatViolation(RobenchError):
    """An adversarial example violates its declared threat model."""


class QueryBudgetExceeded(AccessError):
    """A query-based attack asked the oracle past its budget."""
