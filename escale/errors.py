"""Exception hierarchy: one root, and each subclass also inherits the builtin it resembles."""

from __future__ import annotations


class EscaleError(Exception):
    """Root of every error escale raises on purpose; the CLI prints these as one line."""


class SpecError(EscaleError, ValueError):
    """A spec field, override, input size or spec file is invalid."""


class RegistryError(EscaleError, KeyError):
    """An unknown or duplicate name in a registry (counters, latency backends, ...)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BackendUnavailableError(EscaleError, RuntimeError):
    """A backend (TensorRT, CUDA, fvcore, ...) cannot run on this machine."""


class StudyStoppedError(EscaleError, RuntimeError):
    """A study stopped itself (e.g. its candidates failed K times in a row); the CLI exits 1, not 2."""

    exit_code = 1


class CheckpointError(EscaleError, RuntimeError):
    """A checkpoint file is missing or does not match the model."""


class SpecNote(UserWarning):
    """Something escale changed in a spec on the user's behalf (e.g. fields reset by a backbone switch).

    The CLI prints it as one line (``escale: note: ...``); API users see a Python warning.
    """


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, at most ``limit`` characters ("" for an empty message)."""
    return (str(exc).strip().splitlines() or [""])[0][:limit]


def describe(exc: BaseException, limit: int = 300) -> str:
    """An exception escale did not raise itself, quoted in one line: ``Type: first line of its message``."""
    return f"{type(exc).__name__}: {first_line(exc, limit)}"


def one_line(exc: BaseException, limit: int = 300) -> str:
    """Any exception as one line: an escale error's own message, else :func:`describe`."""
    return str(exc) if isinstance(exc, EscaleError) else describe(exc, limit)
