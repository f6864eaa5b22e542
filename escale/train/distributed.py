"""Multi-process training helpers on ``torch.distributed``: the process context, collectives, SyncBatchNorm.

A run is multi-process when ``torchrun`` (``torch.distributed.run``) started it (``RANK``/``WORLD_SIZE``
in the environment) or when the caller already initialised a process group. Backends: gloo on CPU,
NCCL on CUDA. Each process draws its slice of every global batch (see :mod:`escale.data.loader`),
DistributedDataParallel averages the gradients, metrics are all-reduced and only rank 0 writes files.
"""

from __future__ import annotations

import gc
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from escale.errors import EscaleError, first_line

FAULT_ENV = "ESCALE_FAULT_INJECT"  # "RANK:STEP": that rank dies (exit code 3) before that 1-based step; tests only
FAULT_EXIT_CODE = 3


class DistributedError(EscaleError, RuntimeError):
    """A multi-process run could not start, or one of its processes failed."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``; ``owns_group`` when escale created the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    owns_group: bool = False

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank}/{self.world_size}"

    def sum_(self, tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        """All-reduce (sum) ``tensor`` in place over the processes; NCCL needs it on the GPU."""
        if not self.active:
            return tensor
        work = tensor.to(device) if self.backend == "nccl" else tensor
        dist.all_reduce(work)
        if work is not tensor:
            tensor.copy_(work.to(tensor.device))
        return tensor

    def mean(self, value: torch.Tensor, device: torch.device) -> float:
        """The mean of a scalar over the processes (the value itself in one process)."""
        if not self.active:
            return float(value)
        total = value.detach().float().reshape(1).clone()
        return float(self.sum_(total, device)) / self.world_size

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every process (e.g. before a sharded evaluation)."""
        if self.active:
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)


LOCAL = DistContext()


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside torchrun."""
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), \
            int(os.environ.get("LOCAL_RANK", 0))
    except ValueError:
        raise DistributedError("RANK / WORLD_SIZE / LOCAL_RANK are not integers (start with torchrun)") from None


def world_size() -> int:
    """Processes of this run: the initialised group's size, else torchrun's ``WORLD_SIZE``, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return max(1, env_world()[1])


def setup(device: torch.device) -> DistContext:
    """Join the process group torchrun described (gloo on CPU, NCCL on CUDA), or use an existing one."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), env_world()[2], dist.get_backend())
    rank, world, local = env_world()
    if world <= 1:
        return LOCAL
    if not dist.is_available():
        raise DistributedError("torch.distributed is not available in this torch build")
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, init_method="env://",
                                device_id=device if device.type == "cuda" else None)
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(f"rank {rank}/{world}: cannot join the process group "
                               f"({first_line(exc) or type(exc).__name__})") from None
    return DistContext(rank, world, local, backend, owns_group=True)


def teardown(ctx: DistContext) -> None:
    """Leave the process group. Garbage is collected first, so that a DDP Reducer in a reference cycle drops its
    hold on the group now, while the group is registered, and not later with the GIL held (Trainer.release_ddp)."""
    if ctx.owns_group and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def rank_device(device: torch.device, ctx_local_rank: int, world_size: int) -> torch.device:
    """One GPU per process: ``cuda`` becomes ``cuda:LOCAL_RANK`` in a multi-process run."""
    if device.type == "cuda" and world_size > 1 and device.index is None:
        device = torch.device("cuda", ctx_local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def short_reason(exc: BaseException) -> str:
    """``RuntimeError: Connection reset by peer`` from gloo's ``[.../pair.cc:545] Read error ...: ... . This is...``."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", (str(exc).splitlines() or [""])[0])
    return f"{type(exc).__name__}: {text.split('. ')[0][:160]}"


def maybe_inject_fault(ctx: DistContext, step: int) -> None:
    """Fault-injection hook for tests: with ``ESCALE_FAULT_INJECT=R:S`` rank R dies before 1-based step S."""
    spec = os.environ.get(FAULT_ENV)
    if spec and ctx.active:
        rank, _, at = spec.partition(":")
        if rank.strip() == str(ctx.rank) and at.strip() == str(step + 1):
            os._exit(FAULT_EXIT_CODE)  # a crash: no cleanup, no message, like a killed process


# --- SyncBatchNorm ---------------------------------------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over the processes (the gradient of a sum is the sum of the gradients)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        out = grad.clone()
        dist.all_reduce(out)
        return out


class GlooSyncBatchNormMixin:
    """BatchNorm statistics over the global batch for CPU processes (gloo).

    torch's ``nn.SyncBatchNorm`` has CUDA kernels only ("expected input tensor to be on GPU"), so on
    CPU the statistics are summed with a differentiable all-reduce: two passes (mean, then the
    centred sum of squares), the biased variance to normalise and the unbiased one for the running
    estimate, exactly as ``nn.BatchNorm2d`` does over one batch. Works for timm's ``BatchNormAct2d``
    (its dropout and activation follow) as for ``nn.BatchNorm2d``; state-dict keys are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        count = _AllReduceSum.apply(torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device))
        mean = _AllReduceSum.apply(x.sum((0, 2, 3))) / count  # (C,)
        var = _AllReduceSum.apply(((x - mean.view(1, c, 1, 1)) ** 2).sum((0, 2, 3))) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean, m)
                self.running_var.lerp_(var * count / (count - 1).clamp(min=1), m)
        y = (x - mean.view(1, c, 1, 1)) * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        if hasattr(self, "act"):  # timm BatchNormAct2d: norm -> drop -> act
            y = self.act(self.drop(y))
        return y


_GLOO_CLASSES: dict[type, type] = {}


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm layer over the global batch: timm's converter (``nn.SyncBatchNorm``) on CUDA,
    :class:`GlooSyncBatchNormMixin` on CPU."""
    if device.type == "cuda":
        from timm.layers import convert_sync_batchnorm as timm_convert

        return timm_convert(model)
    for m in model.modules():
        cls = type(m)
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, GlooSyncBatchNormMixin):
            if cls not in _GLOO_CLASSES:
                _GLOO_CLASSES[cls] = type(f"GlooSync{cls.__name__}", (GlooSyncBatchNormMixin, cls), {})
            m.__class__ = _GLOO_CLASSES[cls]
    return model
