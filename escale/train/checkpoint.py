"""Training checkpoints: written atomically (temporary file + ``os.replace``), resumable, self-checking.

A checkpoint stores the run's configuration; resuming with a different one (another spec, step
count, learning rate, number of processes, ...) raises :class:`CheckpointError` naming the first
field that differs. In a multi-process run only rank 0 writes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from escale.errors import CheckpointError

FORMAT = "escale-train-2"  # 2: timm EMA / schedule, crop and evaluation sizes, world size
OLD_FORMATS = ("escale-train-1",)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` so that a reader sees either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save({"format": FORMAT, **state}, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"checkpoint: cannot write {str(path)!r} ({exc.strerror or exc})") from None


def load_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The saved state, or None when ``path`` does not exist yet (a fresh run)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for a corrupt or foreign file
        raise CheckpointError(f"checkpoint: {str(path)!r} cannot be read ({type(exc).__name__})") from None
    if isinstance(state, dict) and state.get("format") in OLD_FORMATS:
        raise CheckpointError(f"checkpoint: {str(path)!r} was written by an older escale ({state['format']}, "
                              f"this one writes {FORMAT}); start a new checkpoint path")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint: {str(path)!r} is not an escale training checkpoint ({FORMAT})")
    return state


def check_config(path: str | Path, saved: dict[str, Any], config: dict[str, Any]) -> None:
    """Raise unless ``saved`` (from the checkpoint) equals ``config`` (this run) field by field."""
    for key in sorted(set(saved) | set(config)):
        if saved.get(key) != config.get(key):
            raise CheckpointError(
                f"checkpoint: {str(path)!r} belongs to a run with {key}={saved.get(key)!r}, not "
                f"{key}={config.get(key)!r} (allowed: the same settings, or a new checkpoint path)")


def check_world_size(path: str | Path, world_size: int) -> None:
    """Before a launch: raise unless a checkpoint at ``path`` (if any) was written by ``world_size`` processes."""
    state = load_checkpoint(path)
    if state is not None:
        check_config(path, {"world_size": state["config"].get("world_size")}, {"world_size": world_size})
