"""One SGD update at a time: the model (DDP-wrapped in a multi-process run), EMA, AMP scaler, LR schedule.

* Schedule: timm's ``CosineLRScheduler`` stepped per update (``t_in_epochs=False``): linear warm-up
  from ``lr / (warmup + 1)`` over ``warmup`` steps, then a cosine from ``lr`` towards 0 over the rest.
  Its learning rate is a closed-form function of the step, so a resumed run needs no scheduler state
  (torch's ``SequentialLR`` keeps a recursive state and warns when resumed mid-way). Or ``onecycle``:
  torch's ``OneCycleLR`` (cosine warm-up from ``lr / 25``, cosine decay, momentum cycled 0.95 -> 0.85 ->
  0.95), fast-forwarded on resume; on the synthetic cue task it learnt the far-cue rule where the cosine
  schedule with the same peak, warm-up and steps did not (reports/context/earlier/schedule_pilots.md).
* EMA: timm's ``ModelEmaV3`` (parameters and BN buffers) with its decay warm-up
  (``1 - (1 + t)^-3/4``, timm's setting for short runs) capped at ``ema_decay``.
* AMP: a step the ``GradScaler`` skipped (inf/NaN gradients) is detected as torch documents it, by the
  scale going down in ``update()``; the EMA and the update count then do not advance.
"""

from __future__ import annotations

import logging
import math
import warnings

import torch
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torch import nn

from escale.train.distributed import LOCAL, DistContext
from escale.train.loss import cross_entropy, ohem_cross_entropy

MOMENTUM = 0.9
EMA_WARMUP_POWER = 0.75
SCHEDULES = ("cosine", "onecycle")


def cosine_schedule(optimizer: torch.optim.Optimizer, lr: float, steps: int,
                    warmup_steps: int = 0) -> CosineLRScheduler:
    """timm's cosine schedule over ``steps`` updates; ``schedule.step_update(step)`` sets 0-based ``step``'s lr."""
    for group in optimizer.param_groups:
        group["initial_lr"] = lr
    quiet = logging.getLogger("timm.scheduler.cosine_lr")  # it warns that a 1-step cosine is flat
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return CosineLRScheduler(optimizer, t_initial=max(1, steps - warmup_steps), lr_min=0.0,
                                 warmup_t=warmup_steps, warmup_lr_init=lr / (warmup_steps + 1),
                                 warmup_prefix=True, t_in_epochs=False, initialize=False)
    finally:
        quiet.setLevel(level)


class OneCycleSchedule:
    """torch's ``OneCycleLR`` (peak ``lr`` at step ``warmup_steps``, cosine both ways, momentum cycled
    0.95 -> 0.85 -> 0.95) behind timm's ``step_update(step)``: ``step`` is 0-based and only moves forward,
    so a resumed run fast-forwards to its first step."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, steps: int, warmup_steps: int = 0) -> None:
        total = max(3, steps)  # OneCycleLR needs both phases at least one step long
        peak = min(max(1, warmup_steps), total - 2)  # 0-based step of the peak, as timm's warm-up ends
        self.steps, self.at = steps, 0
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total,
                                                            pct_start=(peak + 1) / total)

    def step_update(self, step: int) -> None:
        if step < self.at:
            raise ValueError(f"OneCycleSchedule: step {step} is before step {self.at} (steps only move forward)")
        with warnings.catch_warnings():  # a resumed run steps the schedule before the optimizer
            warnings.filterwarnings("ignore", message=r".*lr_scheduler\.step\(\)", category=UserWarning)
            while self.at < min(step, self.steps - 1):
                self.schedule.step()
                self.at += 1


def lr_schedule(name: str, optimizer: torch.optim.Optimizer, lr: float, steps: int,
                warmup_steps: int = 0) -> CosineLRScheduler | OneCycleSchedule:
    """The schedule ``name`` (:data:`SCHEDULES`): ``cosine`` (timm: linear warm-up, cosine to 0, momentum 0.9,
    the paper's) or ``onecycle`` (torch's OneCycleLR, see :class:`OneCycleSchedule`)."""
    if name == "onecycle":
        return OneCycleSchedule(optimizer, lr, steps, warmup_steps)
    if name != "cosine":
        raise ValueError(f"schedule: {name!r} is unknown (allowed: {', '.join(SCHEDULES)})")
    return cosine_schedule(optimizer, lr, steps, warmup_steps)


class Trainer:
    """Model + SGD + optional EMA + AMP scaler; :meth:`step` runs one update on a batch.

    ``model`` is the plain module (``self.module``); in a multi-process ``dist`` context the forward
    pass goes through ``DistributedDataParallel`` (``self.model``). ``scaler`` replaces the default
    ``torch.amp.GradScaler`` (tests pass one that skips steps).
    """

    def __init__(self, model: nn.Module, weight_decay: float, device: torch.device, amp: bool = False,
                 ohem: bool = True, ema_decay: float | None = None, *, dist: DistContext = LOCAL,
                 scaler: torch.amp.GradScaler | None = None) -> None:
        self.module, self.device, self.amp, self.ohem, self.dist = model, device, amp, ohem, dist
        decay = [p for p in model.parameters() if p.ndim > 1]  # conv / linear weights
        rest = [p for p in model.parameters() if p.ndim <= 1]  # BN, biases, fusion weights
        self.optimizer = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay},
                                          {"params": rest, "weight_decay": 0.0}], lr=0.0, momentum=MOMENTUM)
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler("cuda", enabled=amp)
        self.ema = (ModelEmaV3(model, decay=ema_decay, use_warmup=True, warmup_power=EMA_WARMUP_POWER)
                    if ema_decay is not None else None)
        self.model = model
        if dist.active:
            ids = [device.index] if device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.updates = 0  # optimizer steps applied
        self.skipped_steps = 0  # steps the GradScaler skipped (inf/NaN gradients)

    def release_ddp(self) -> None:
        """Drop the DDP wrapper (``self.model`` becomes the bare module); call before leaving the process group.

        DDP's Reducer holds the process group; left to die after ``destroy_process_group`` it would destroy the
        group itself, joining gloo's worker threads while holding the GIL, which deadlocks on torch 2.11 when a
        worker still needs the GIL to free a finished collective's tensors (pytorch#56297).
        """
        self.model = self.module

    def step(self, images: torch.Tensor, labels: torch.Tensor, lr: float | None = None) -> float:
        """One SGD update on (B, 3, H, W) normalised images and (B, H, W) labels; returns the loss
        (averaged over the processes). ``lr`` overrides the learning rate the schedule set."""
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self.model.train()
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            logits = self.model(images)  # (B, K, H, W)
        loss = (ohem_cross_entropy if self.ohem else cross_entropy)(logits, labels)
        value = self.dist.mean(loss.detach(), self.device)  # every process sees the same value
        if not math.isfinite(value):
            return value  # every process stops here together; the weights are left as they were
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scaler.is_enabled() and self.scaler.get_scale() < scale:  # inf/NaN gradients: step skipped
            self.skipped_steps += 1
            return value
        self.updates += 1
        if self.ema is not None:
            self.ema.update(self.module, step=self.updates)
        return value

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.module

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "updates": self.updates, "skipped_steps": self.skipped_steps,
                "ema": self.ema.module.state_dict() if self.ema is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.updates = int(state["updates"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])
