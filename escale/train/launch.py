"""``escale train --nproc N``: start ``N`` training processes with torchrun (``torch.distributed.run``).

The launcher is torchrun's own entry (``torch.distributed.run.run``) with a standalone rendezvous on
this machine and no restarts; every process runs ``python -m escale train ...`` and joins the group
from torchrun's environment. When a process fails, torchrun stops the others and this module turns
its report into one line naming the process that failed first and its exit code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from escale.errors import SpecError, first_line
from escale.train.distributed import FAULT_EXIT_CODE, DistributedError


@contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """torchrun's agent logs every worker it stops; the caller reports the failure in one line instead."""
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith("torch.distributed")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def torchrun_args(argv: list[str], nproc: int) -> list[str]:
    """torchrun's command line for ``nproc`` local processes each running ``python -m escale train ARGV``."""
    return ["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc), "--max-restarts", "0",
            "--monitor-interval", "0.1", "-m", "escale", "train", *argv]


def launch(argv: list[str], nproc: int, threads: int | None = None) -> None:
    """Run ``escale train ARGV`` in ``nproc`` processes; returns when all succeeded, else raises
    :class:`DistributedError` (one line). ``threads`` sets ``OMP_NUM_THREADS`` of each (default 1)."""
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise SpecError(f"nproc: {nproc!r} is not a positive integer")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads or before or 1)
    try:
        with _quiet_torch_logs():
            run(parse_args(torchrun_args(argv, nproc)))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        why = " (injected fault)" if failure.exitcode == FAULT_EXIT_CODE else ""
        raise DistributedError(f"train --nproc {nproc}: process {rank} failed first with exit code "
                               f"{failure.exitcode}{why}; torchrun stopped the others (messages, if any, above)") from None
    except SignalException:  # Ctrl-C / SIGTERM reached torchrun, which stopped the processes
        raise KeyboardInterrupt from None
    except (RuntimeError, ValueError) as exc:
        first = first_line(exc, 200) or type(exc).__name__
        raise DistributedError(f"train --nproc {nproc}: torchrun could not start the processes ({first})") from None
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before
