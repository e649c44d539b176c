"""The errors of the versioning layer: an unusable repository, a misconfigured or unreachable remote (typed, so
that only the unreachable one is retried), and a failed stage with the tail of its output."""

from __future__ import annotations


class VersioningError(RuntimeError):
    """A DVC repository in a state the asked operation cannot handle; the message says what to do."""


class RemoteConfigError(VersioningError):
    """The DVC remote is misconfigured (unknown name, bad URL, missing plugin, login or host key refused)."""


class RemoteUnreachableError(VersioningError):
    """The DVC remote could not be reached (refused, reset, timed out): transient, worth a retry."""


class StageFailedError(VersioningError):
    """A stage command failed: carries the stage name and the last lines of its output."""

    def __init__(self, stage: str, reason: str, tail: str) -> None:
        self.stage, self.reason, self.tail = stage, reason, tail
        super().__init__(f"stage '{stage}' failed: {reason}\n--- last lines of its output ---\n{tail}".rstrip())
