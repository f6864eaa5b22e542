"""Short-schedule training (paper section 4.1, scaled down) and single-scale evaluation.

SGD with momentum 0.9, linear warm-up then cosine decay to 0, weight decay on conv/linear weights,
OHEM cross-entropy with the ignore index, optional EMA of the weights (evaluated instead of the raw
weights), flip / scale jitter / random crop. CPU by default; CUDA with float16 autocast when asked.
Each step's batch is a function of ``(seed, step)``, so a run resumed from its checkpoint draws the
same batches as an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from escale.data import TrainTransform, eval_batches, make_dataset, normalize, train_batch
from escale.data.base import SegDataset
from escale.errors import BackendUnavailableError, CheckpointError, EscaleError, SpecError
from escale.models import build_model
from escale.spec import ESegSpec, load_spec
from escale.train.checkpoint import check_config, load_checkpoint, save_checkpoint
from escale.train.loss import cross_entropy, ohem_cross_entropy
from escale.train.metrics import ConfusionMatrix
from escale.train.record import TrainProgress, TrainRecord

MOMENTUM = 0.9


class TrainingDivergedError(EscaleError, FloatingPointError):
    """The training loss became NaN or infinite."""


def lr_at(step: int, steps: int, base_lr: float, warmup_steps: int = 0) -> float:
    """Learning rate of 0-based ``step``: linear warm-up to ``base_lr``, then cosine decay towards 0."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, steps - warmup_steps)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * (step - warmup_steps) / span))


def resolve_device(device: str, amp: bool | None) -> tuple[torch.device, bool]:
    """``cpu`` | ``cuda`` | ``cuda:N`` | ``auto`` -> (device, use AMP); AMP defaults to on for CUDA only."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise SpecError(f"device: {device!r} is not a device (allowed: cpu, cuda, cuda:N, auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(f"device: {device!r} needs CUDA, which is not available here (use cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise SpecError(f"device: {device!r} is not supported (allowed: cpu, cuda, cuda:N, auto)")
    use_amp = dev.type == "cuda" if amp is None else bool(amp)
    if use_amp and dev.type != "cuda":
        raise SpecError("amp: mixed precision needs a CUDA device (allowed on cpu: amp=False)")
    return dev, use_amp


class Trainer:
    """Model + SGD + optional EMA + AMP scaler; :meth:`step` runs one update on a batch."""

    def __init__(self, model: nn.Module, weight_decay: float, device: torch.device, amp: bool = False,
                 ohem: bool = True, ema_decay: float | None = None) -> None:
        self.model, self.device, self.amp, self.ohem = model, device, amp, ohem
        decay = [p for p in model.parameters() if p.ndim > 1]  # conv / linear weights
        rest = [p for p in model.parameters() if p.ndim <= 1]  # BN, biases, fusion weights
        self.optimizer = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay},
                                          {"params": rest, "weight_decay": 0.0}], lr=0.0, momentum=MOMENTUM)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp)
        self.ema_decay = ema_decay
        self.ema = copy.deepcopy(model).eval().requires_grad_(False) if ema_decay is not None else None
        self.updates = 0

    def step(self, images: torch.Tensor, labels: torch.Tensor, lr: float) -> float:
        """One SGD update on (B, 3, H, W) normalised images and (B, H, W) labels; returns the loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            logits = self.model(images)  # (B, K, H, W)
        loss = (ohem_cross_entropy if self.ohem else cross_entropy)(logits, labels)
        value = float(loss.detach())
        if not math.isfinite(value):
            return value  # the caller stops the run; the weights are left as they were
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.updates += 1
        if self.ema is not None:
            self._update_ema()
        return value

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = min(self.ema_decay, (1.0 + self.updates) / (10.0 + self.updates))  # short runs warm up
        for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            e.mul_(d).add_(p.detach(), alpha=1.0 - d)
        for e, b in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            e.copy_(b)

    @property
    def eval_model(self) -> nn.Module:
        return self.ema if self.ema is not None else self.model

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "updates": self.updates,
                "ema": self.ema.state_dict() if self.ema is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.updates = int(state["updates"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])


@torch.no_grad()
def evaluate(model: nn.Module, dataset: SegDataset, num_images: int, batch_size: int,
             device: torch.device, amp: bool = False) -> ConfusionMatrix:
    """Single-scale confusion matrix of ``model`` over the first ``num_images`` of ``dataset``."""
    model.eval()
    cm = ConfusionMatrix(dataset.num_classes, dataset.ignore_index)
    for images, labels in eval_batches(dataset, num_images, batch_size):
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            logits = model(normalize(images.to(device)))  # (B, K, H, W)
        cm.update(logits.argmax(1).cpu(), labels)
    return cm


def _check_args(steps: int, batch_size: int, lr: float, weight_decay: float, eval_images: int) -> None:
    for name, value in (("steps", steps), ("batch_size", batch_size), ("eval_images", eval_images)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SpecError(f"{name}: {value!r} is not a positive integer")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise SpecError(f"lr: {lr!r} is not a finite positive number")
    if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise SpecError(f"weight_decay: {weight_decay!r} is not a finite number >= 0")


@dataclass
class _Run:
    """Everything one run needs, resolved from the arguments of :func:`train`."""

    spec: ESegSpec
    config: dict
    train_set: SegDataset
    val_set: SegDataset
    trainer: Trainer
    transform: TrainTransform
    seed: int
    losses: list[float] = field(default_factory=list)
    start: int = 0
    prior_seconds: float = 0.0


def _check_batch_norm(spec: ESegSpec, input_size: tuple[int, int], batch_size: int) -> None:
    """BatchNorm cannot train on one value per channel: batch 1 with a 1x1 top level (e.g. P9 at 512x512)."""
    top = 2 ** spec.decoder.max_level
    h, w = (math.ceil(v / top) for v in input_size)
    if batch_size * h * w < 2:
        raise SpecError(f"batch_size: 1 cannot train BatchNorm at P{spec.decoder.max_level}, which is 1x1 at "
                        f"{input_size[0]}x{input_size[1]} (allowed: batch_size >= 2, or an input over "
                        f"{top} pixels on one side)")


def train(spec: ESegSpec | str, dataset: str = "synthetic", steps: int = 50,
          input_size: tuple[int, int] = (128, 256), batch_size: int = 4, lr: float = 0.08,
          weight_decay: float = 5e-5, seed: int = 0, device: str = "cpu", data_root: str | Path | None = None,
          eval_images: int = 16, ema: bool = False, checkpoint: str | Path | None = None,
          progress: Callable[[TrainProgress], None] | None = None, *,
          scale_range: tuple[float, float] | None = None, ohem: bool = True, amp: bool | None = None,
          ema_decay: float = 0.999, warmup_steps: int | None = None,
          checkpoint_every: int | None = None, threads: int | None = None) -> TrainRecord:
    """Train ``spec`` for ``steps`` SGD steps on ``dataset`` and evaluate mIoU; returns a :class:`TrainRecord`.

    ``input_size`` (H, W) pixels is the training crop and the evaluation size (the synthetic scenes
    are drawn at it; real images are resized to it). The spec's ``num_classes`` is set to the
    dataset's. ``scale_range`` defaults to the dataset's (0.5-2.0 for real data, none for synthetic);
    ``warmup_steps`` to 5% of ``steps``. With ``checkpoint`` a run saves there every
    ``checkpoint_every`` steps (default: 10 times per run) and resumes from it when it exists.
    ``progress`` receives a :class:`TrainProgress` after every step; library code never prints.
    ``threads`` sets torch's intra-op threads for this call only (on a busy 2-core CPU, 1 thread ran
    tiny models 20-100x faster than 2).
    """
    kwargs = {k: v for k, v in locals().items() if k != "threads"}  # the arguments, nothing else yet
    if threads is None:
        return _train(**kwargs)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise SpecError(f"threads: {threads!r} is not a positive integer")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(**kwargs)
    finally:
        torch.set_num_threads(before)


def _train(spec: ESegSpec | str, dataset: str, steps: int, input_size: tuple[int, int], batch_size: int, lr: float,
           weight_decay: float, seed: int, device: str, data_root: str | Path | None, eval_images: int, ema: bool,
           checkpoint: str | Path | None, progress: Callable[[TrainProgress], None] | None,
           scale_range: tuple[float, float] | None, ohem: bool, amp: bool | None, ema_decay: float,
           warmup_steps: int | None, checkpoint_every: int | None) -> TrainRecord:
    spec = load_spec(spec) if isinstance(spec, str) else spec
    _check_args(steps, batch_size, lr, weight_decay, eval_images)
    dev, use_amp = resolve_device(device, amp)
    input_size = spec.check_input_size(tuple(input_size))
    train_set = make_dataset(dataset, "train", data_root, size=input_size, seed=0)
    val_set = make_dataset(dataset, "val", data_root, size=input_size, seed=0)
    if spec.num_classes != train_set.num_classes:
        spec = spec.with_overrides({"num_classes": train_set.num_classes})
    _check_batch_norm(spec, input_size, batch_size)
    config = {"spec_id": spec.spec_id, "dataset": dataset, "steps": steps, "input_size": list(input_size),
              "batch_size": batch_size, "lr": float(lr), "weight_decay": float(weight_decay), "seed": seed,
              "ema": bool(ema), "ohem": bool(ohem), "eval_images": eval_images,
              "warmup_steps": max(0, steps // 20) if warmup_steps is None else int(warmup_steps),
              "scale_range": list(scale_range or train_set.default_scale_range)}
    torch.manual_seed(seed)
    trainer = Trainer(build_model(spec).to(dev), weight_decay, dev, use_amp, ohem,
                      ema_decay if ema else None)
    run = _Run(spec, config, train_set, val_set, trainer, TrainTransform(input_size, tuple(config["scale_range"])),
               seed)
    run.start, run.prior_seconds, run.losses = _resume(checkpoint, config, trainer)
    session_seconds = _run_steps(run, checkpoint, checkpoint_every or max(1, steps // 10), progress)
    t1 = time.perf_counter()
    cm = evaluate(trainer.eval_model, val_set, eval_images, batch_size, dev, use_amp)
    return _record(run, cm, session_seconds, time.perf_counter() - t1, checkpoint)


def _run_steps(run: _Run, checkpoint: str | Path | None, every: int,
               progress: Callable[[TrainProgress], None] | None) -> float:
    """Train from ``run.start`` to the last step; returns this session's wall seconds."""
    cfg, trainer = run.config, run.trainer
    steps, batch_size = cfg["steps"], cfg["batch_size"]
    t0 = time.perf_counter()
    for step in range(run.start, steps):
        images, labels = train_batch(run.train_set, batch_size, run.seed, step, run.transform)
        lr_now = lr_at(step, steps, cfg["lr"], cfg["warmup_steps"])
        loss = trainer.step(normalize(images.to(trainer.device)), labels.to(trainer.device), lr_now)
        if not math.isfinite(loss):
            raise TrainingDivergedError(
                f"train: loss became {loss} at step {step + 1}/{steps} (lr={lr_now:.3g}); lower lr or "
                "check the data (no checkpoint was written for this step)")
        run.losses.append(loss)
        if checkpoint is not None and ((step + 1) % every == 0 or step + 1 == steps):
            save_checkpoint(checkpoint, {"config": cfg, "step": step + 1, "losses": run.losses,
                                         "train_seconds": run.prior_seconds + time.perf_counter() - t0,
                                         **trainer.state_dict()})
        if progress is not None:  # after saving: an interrupt raised here loses no finished step
            throughput = (step + 1 - run.start) * batch_size / max(time.perf_counter() - t0, 1e-9)
            progress(TrainProgress("train", step + 1, steps, loss, lr_now, throughput))
    seconds = time.perf_counter() - t0
    if progress is not None:
        done = (steps - run.start) * batch_size
        progress(TrainProgress("eval", steps, steps, run.losses[-1] if run.losses else float("nan"), 0.0,
                               done / max(seconds, 1e-9)))
    return seconds


def _record(run: _Run, cm: ConfusionMatrix, session_seconds: float, eval_seconds: float,
            checkpoint: str | Path | None) -> TrainRecord:
    cfg, trainer, spec = run.config, run.trainer, run.spec
    steps, images = cfg["steps"], (cfg["steps"] - run.start) * cfg["batch_size"]
    ious = cm.ious()
    return TrainRecord(
        name=spec.name, spec_id=spec.spec_id, dataset=cfg["dataset"], input_size=cfg["input_size"], steps=steps,
        batch_size=cfg["batch_size"], lr=cfg["lr"], weight_decay=cfg["weight_decay"], seed=cfg["seed"],
        device=str(trainer.device), amp=trainer.amp, ema=cfg["ema"], ohem=cfg["ohem"], miou=cm.miou,
        pixel_acc=cm.pixel_acc, eval_images=min(cfg["eval_images"], len(run.val_set)),
        final_loss=run.losses[-1] if run.losses else float("nan"),
        train_seconds=run.prior_seconds + session_seconds, eval_seconds=eval_seconds,
        images_per_second=images / session_seconds if images else 0.0, num_classes=spec.num_classes,
        iou_per_class={n: (None if math.isnan(v) else float(v))
                       for n, v in zip(run.val_set.class_names, ious, strict=True)},
        loss_history=list(run.losses), confusion_matrix=cm.counts.tolist(), resumed_from_step=run.start,
        checkpoint=str(checkpoint) if checkpoint is not None else None, spec=spec.to_dict(),
        notes=[n for n in [spec.input_size_note(tuple(cfg["input_size"]))] if n])


def _resume(checkpoint: str | Path | None, config: dict, trainer: Trainer) -> tuple[int, float, list[float]]:
    """(first step to run, seconds already trained, losses so far) from ``checkpoint``, if it exists."""
    if checkpoint is None:
        return 0, 0.0, []
    state = load_checkpoint(checkpoint)
    if state is None:
        return 0, 0.0, []
    check_config(checkpoint, state["config"], config)
    try:
        trainer.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint: {str(checkpoint)!r} does not match the model "
                              f"({type(exc).__name__})") from None
    return int(state["step"]), float(state["train_seconds"]), [float(v) for v in state["losses"]]
