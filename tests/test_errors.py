"""The one-line quoting of exceptions every error path shares."""

from __future__ import annotations

from escale.errors import SpecError, describe, first_line, one_line


def test_first_line_strips_takes_the_first_line_and_cuts_at_the_limit() -> None:
    exc = RuntimeError("\n  CUDA error: out of memory\nCompile with TORCH_USE_CUDA_DSA\n")
    assert first_line(exc) == "CUDA error: out of memory"
    assert first_line(exc, 4) == "CUDA"
    assert first_line(ValueError()) == ""


def test_describe_names_the_type_and_one_line_keeps_escale_messages_whole() -> None:
    assert describe(OSError("disk full\nmore")) == "OSError: disk full"
    assert one_line(KeyError("x")) == "KeyError: 'x'"
    spec = SpecError("width: -1 is not allowed (allowed: > 0)")
    assert one_line(spec) == "width: -1 is not allowed (allowed: > 0)"
    assert len(describe(RuntimeError("a" * 1000))) == len("RuntimeError: ") + 300
