"""The project's exceptions. The CLI turns each into one line and a non-zero exit."""
from __future__ import annotations


class LipsyncBenchError(Exception):
    """Base class: a problem the user can act on, stated in one sentence. ``exit_code`` is the CLI's
    exit status for it."""

    exit_code = 1


class ParameterError(LipsyncBenchError):
    """A bad option: an unknown metric or parameter, or a value outside its schema. Raised before any
    input is read or anything is written (exit status 2, as for other usage errors)."""

    exit_code = 2


class MediaError(LipsyncBenchError):
    """A video, frame folder or audio file cannot be read, or does not fit the protocol."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class PairingError(LipsyncBenchError):
    """Generated and ground-truth inputs do not match (sizes, frame counts, missing folders)."""


class MetricError(LipsyncBenchError):
    """A metric cannot be computed for one video (too few frames, missing input)."""


class UnavailableError(LipsyncBenchError):
    """A metric cannot run on this machine right now (missing weights or packages)."""


class StoreError(LipsyncBenchError):
    """The results store is unreadable, or holds results of another protocol."""
