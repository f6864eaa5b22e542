"""Short-schedule training (paper section 4.1) and single-scale evaluation at the labels' resolution.

Defaults per dataset come from :mod:`escale.train.protocol`; the update itself (SGD, timm's cosine
schedule and EMA, AMP) from :mod:`escale.train.trainer`; evaluation from :mod:`escale.train.evaluate`.
Each step's global batch is a function of ``(seed, step)``, so a run resumed from its checkpoint
draws the same batches as an uninterrupted one, and under ``torchrun`` every process draws its own
slice of it (:mod:`escale.train.distributed`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from escale.data import TrainTransform, make_dataset, normalize, rank_slice, train_batch
from escale.data.base import SegDataset
from escale.errors import BackendUnavailableError, CheckpointError, EscaleError, SpecError
from escale.models import build_model
from escale.spec import ESegSpec, load_spec
from escale.train import distributed as ddp
from escale.train.checkpoint import check_config, load_checkpoint, save_checkpoint
from escale.train.distributed import DistContext, DistributedError
from escale.train.evaluate import evaluate
from escale.train.init import INITS, init_decoder
from escale.train.metrics import ConfusionMatrix
from escale.train.protocol import protocol_for
from escale.train.record import TrainProgress, TrainRecord
from escale.train.trainer import SCHEDULES, Trainer, lr_schedule


class TrainingDivergedError(EscaleError, FloatingPointError):
    """The training loss became NaN or infinite."""


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


def _check_args(steps: int, batch_size: int, lr: float, weight_decay: float, eval_images: int) -> None:
    for name, value in (("steps", steps), ("batch_size", batch_size), ("eval_images", eval_images)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SpecError(f"{name}: {value!r} is not a positive integer")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise SpecError(f"lr: {lr!r} is not a finite positive number")
    if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise SpecError(f"weight_decay: {weight_decay!r} is not a finite number >= 0")


def _check_batch_norm(spec: ESegSpec, input_size: tuple[int, int], batch_size: int, per_process: bool) -> None:
    """BatchNorm cannot train on one value per channel: batch 1 with a 1x1 top level (e.g. P9 at 512x512)."""
    top = 2 ** spec.decoder.max_level
    h, w = (math.ceil(v / top) for v in input_size)
    if batch_size * h * w < 2:
        who = " per process" if per_process else ""
        raise SpecError(f"batch_size: {batch_size}{who} cannot train BatchNorm at P{spec.decoder.max_level}, which is "
                        f"1x1 at {input_size[0]}x{input_size[1]} (allowed: batch_size >= 2{who}, "
                        f"{'sync_bn, ' if per_process else ''}or an input over {top} pixels on one side)")


@dataclass
class _Run:
    """Everything one run needs, resolved from the arguments of :func:`train`."""

    spec: ESegSpec
    config: dict
    train_set: SegDataset
    val_set: SegDataset
    trainer: Trainer
    transform: TrainTransform
    dist: DistContext
    losses: list[float] = field(default_factory=list)
    start: int = 0
    prior_seconds: float = 0.0


def train(spec: ESegSpec | str, dataset: str = "synthetic", steps: int = 50,
          input_size: tuple[int, int] | None = None, batch_size: int = 4, lr: float | None = None,
          weight_decay: float | None = None, seed: int = 0, device: str = "cpu",
          data_root: str | Path | None = None, eval_images: int = 16, ema: bool | None = None,
          checkpoint: str | Path | None = None, progress: Callable[[TrainProgress], None] | None = None, *,
          scale_range: tuple[float, float] | None = None, ohem: bool | None = None, amp: bool | None = None,
          ema_decay: float = 0.999, warmup_steps: int | None = None, checkpoint_every: int | None = None,
          threads: int | None = None, eval_size: tuple[int, int] | None = None, sync_bn: bool = False,
          init: str = "default", eval_every: int | None = None,
          on_eval: Callable[[int, float], None] | None = None, schedule: str | None = None) -> TrainRecord:
    """Train ``spec`` for ``steps`` SGD steps on ``dataset`` and evaluate mIoU; returns a :class:`TrainRecord`.

    ``None`` arguments take the dataset's defaults (:mod:`escale.train.protocol`). ``input_size``
    (H, W) is the training crop (Cityscapes 512x1024, ADE20K 520x520; the synthetic scenes are drawn
    at it, default 128x256); real images are jittered at their own resolution, then cropped.
    ``eval_size`` is the size whole validation images are resized to (Cityscapes 1024x2048, ADE20K
    520x520, synthetic: the input size); scores are taken at the labels' own resolution.
    ``batch_size`` is the global batch: under ``torchrun`` each process trains on its slice
    (``sync_bn``: BatchNorm over the global batch). With ``checkpoint`` a run saves there every
    ``checkpoint_every`` steps (default: 10 times per run) and resumes from it when it exists.
    ``progress`` receives a :class:`TrainProgress` after every step (rank 0 only); library code never
    prints. ``threads`` sets torch's intra-op threads for this call only. ``init`` = ``efficientdet``
    re-initialises the decoder and head as EfficientDet does (see :mod:`escale.train.init`).
    With ``on_eval`` and ``eval_every``, the model is also evaluated every ``eval_every`` steps before the
    last (the same validation images) and ``on_eval(step, miou)`` receives the mIoU (fraction); it may
    raise to stop the run there (a search pruner does). Unused, nothing changes. ``schedule`` is
    ``cosine`` (timm, linear warm-up) or ``onecycle`` (torch's OneCycleLR, momentum cycled); see
    :mod:`escale.train.trainer`.
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


def _datasets(dataset: str, data_root: str | Path | None, input_size: tuple[int, int] | None,
              ) -> tuple[SegDataset, SegDataset, tuple[int, int]]:
    """(train set, validation set, crop size): native-resolution sets for files, drawn at the crop otherwise."""
    probe = make_dataset(dataset, "val", data_root, size=None)
    crop = tuple(input_size) if input_size is not None else protocol_for(probe).crop_size
    if probe.native_resolution:
        return make_dataset(dataset, "train", data_root, size=None), probe, crop
    return (make_dataset(dataset, "train", data_root, size=crop, seed=0),
            make_dataset(dataset, "val", data_root, size=crop, seed=0), crop)


def _train(spec: ESegSpec | str, dataset: str, steps: int, input_size: tuple[int, int] | None, batch_size: int,
           lr: float | None, weight_decay: float | None, seed: int, device: str, data_root: str | Path | None,
           eval_images: int, ema: bool | None, checkpoint: str | Path | None,
           progress: Callable[[TrainProgress], None] | None, scale_range: tuple[float, float] | None,
           ohem: bool | None, amp: bool | None, ema_decay: float, warmup_steps: int | None,
           checkpoint_every: int | None, eval_size: tuple[int, int] | None, sync_bn: bool, init: str,
           eval_every: int | None, on_eval: Callable[[int, float], None] | None,
           schedule: str | None) -> TrainRecord:
    spec = load_spec(spec) if isinstance(spec, str) else spec
    _check_args(steps, batch_size, 1.0 if lr is None else lr, 0.0 if weight_decay is None else weight_decay,
                eval_images)
    warmup = max(0, steps // 20) if warmup_steps is None else warmup_steps
    if not (isinstance(warmup, int) and not isinstance(warmup, bool) and 0 <= warmup < steps):
        raise SpecError(f"warmup_steps: {warmup!r} is not allowed (allowed: 0..{steps - 1})")
    if schedule is not None and schedule not in SCHEDULES:
        raise SpecError(f"schedule: {schedule!r} is unknown (allowed: {', '.join(SCHEDULES)})")
    if init not in INITS:
        raise SpecError(f"init: {init!r} is unknown (allowed: {', '.join(INITS)})")
    if eval_every is not None and not (isinstance(eval_every, int) and not isinstance(eval_every, bool)
                                       and eval_every >= 1):
        raise SpecError(f"eval_every: {eval_every!r} is not a positive integer")
    dev, use_amp = resolve_device(device, amp)
    if input_size is not None:
        input_size = spec.check_input_size(tuple(input_size))
    train_set, val_set, crop = _datasets(dataset, data_root, input_size)
    proto = protocol_for(train_set)
    if eval_size is None:
        eval_size = proto.eval_size if train_set.native_resolution else crop
    eval_size = spec.check_input_size(tuple(eval_size)) if eval_size is not None else None
    if spec.num_classes != train_set.num_classes:
        spec = spec.with_overrides({"num_classes": train_set.num_classes})
    world = ddp.world_size()
    _check_batch_norm(spec, crop, batch_size if sync_bn else len(rank_slice(batch_size, 0, world)),
                      world > 1 and not sync_bn)
    use_ema = bool(proto.ema if ema is None else ema)
    if use_ema and not (isinstance(ema_decay, (int, float)) and 0.0 < ema_decay < 1.0):
        raise SpecError(f"ema_decay: {ema_decay!r} is not allowed (allowed: 0 < ema_decay < 1)")
    config = {"spec_id": spec.spec_id, "dataset": dataset, "steps": steps, "input_size": list(crop),
              "eval_size": list(eval_size) if eval_size else None, "batch_size": batch_size,
              "lr": float(proto.lr if lr is None else lr),
              "weight_decay": float(proto.weight_decay if weight_decay is None else weight_decay), "seed": seed,
              "ema": use_ema, "ema_decay": float(ema_decay) if use_ema else None,
              "ohem": bool(proto.ohem if ohem is None else ohem), "eval_images": eval_images,
              "warmup_steps": warmup, "schedule": schedule or proto.schedule, "init": init, "world_size": world, "sync_bn": bool(sync_bn),
              "scale_range": list(scale_range or proto.scale_range or train_set.default_scale_range)}
    rungs = _Rungs(eval_every, on_eval) if on_eval is not None and eval_every else None
    return _run(spec, config, train_set, val_set, dev, use_amp, checkpoint, checkpoint_every, progress, rungs)


@dataclass(frozen=True)
class _Rungs:
    """Intermediate evaluations: every ``every`` steps (before the last), ``callback(step, miou)``."""

    every: int
    callback: Callable[[int, float], None]


def _run(spec: ESegSpec, config: dict, train_set: SegDataset, val_set: SegDataset, dev: torch.device,
         use_amp: bool, checkpoint: str | Path | None, checkpoint_every: int | None,
         progress: Callable[[TrainProgress], None] | None, rungs: _Rungs | None = None) -> TrainRecord:
    """Join the process group (if any), train, evaluate (sharded), leave the group."""
    _, world, local = ddp.env_world()
    dev = ddp.rank_device(dev, local, world)
    ctx = ddp.setup(dev)
    run: _Run | None = None
    try:
        run = _build(spec, config, train_set, val_set, dev, use_amp, ctx)
        run.start, run.prior_seconds, run.losses = _resume(checkpoint, config, run.trainer)
        every = checkpoint_every or max(1, config["steps"] // 10)
        session_seconds = _run_steps(run, checkpoint, every, progress, rungs)
        t1 = time.perf_counter()
        ctx.broadcast_module(run.trainer.eval_model)  # per-process BN statistics differ without sync_bn
        cm = evaluate(run.trainer.eval_model, val_set, config["eval_images"], config["batch_size"], dev, use_amp,
                      config["eval_size"], ctx)
        return _record(run, cm, session_seconds, time.perf_counter() - t1, checkpoint)
    finally:
        if run is not None:
            run.trainer.release_ddp()  # before the group goes: see Trainer.release_ddp
        ddp.teardown(ctx)


def _build(spec: ESegSpec, config: dict, train_set: SegDataset, val_set: SegDataset, dev: torch.device,
           use_amp: bool, ctx: DistContext) -> _Run:
    torch.manual_seed(config["seed"])
    model = init_decoder(build_model(spec), config["init"])
    if config["sync_bn"] and ctx.active:
        model = ddp.convert_sync_batchnorm(model, dev)
    trainer = Trainer(model.to(dev), config["weight_decay"], dev, use_amp, config["ohem"], config["ema_decay"],
                      dist=ctx)
    transform = TrainTransform(tuple(config["input_size"]), tuple(config["scale_range"]))
    return _Run(spec, config, train_set, val_set, trainer, transform, ctx)


def _run_steps(run: _Run, checkpoint: str | Path | None, every: int,
               progress: Callable[[TrainProgress], None] | None, rungs: _Rungs | None = None) -> float:
    """Train from ``run.start`` to the last step; returns this session's wall seconds."""
    cfg, trainer, ctx = run.config, run.trainer, run.dist
    steps, batch_size = cfg["steps"], cfg["batch_size"]
    schedule = lr_schedule(cfg["schedule"], trainer.optimizer, cfg["lr"], steps, cfg["warmup_steps"])
    t0 = time.perf_counter()
    for step in range(run.start, steps):
        ddp.maybe_inject_fault(ctx, step)
        images, labels = train_batch(run.train_set, batch_size, cfg["seed"], step, run.transform,
                                     ctx.rank, ctx.world_size)
        schedule.step_update(step)
        lr_now = trainer.optimizer.param_groups[0]["lr"]
        try:
            loss = trainer.step(normalize(images.to(trainer.device)), labels.to(trainer.device))
        except RuntimeError as exc:
            if not ctx.active:
                raise
            raise DistributedError(f"{ctx.describe()}: step {step + 1}/{steps} failed ({ddp.short_reason(exc)}); "
                                   "another process has probably died, see its message") from None
        if not math.isfinite(loss):
            raise TrainingDivergedError(
                f"train: loss became {loss} at step {step + 1}/{steps} (lr={lr_now:.3g}); lower lr or "
                "check the data (no checkpoint was written for this step)")
        run.losses.append(loss)
        if checkpoint is not None and ctx.is_main and ((step + 1) % every == 0 or step + 1 == steps):
            save_checkpoint(checkpoint, {"config": cfg, "step": step + 1, "losses": run.losses,
                                         "train_seconds": run.prior_seconds + time.perf_counter() - t0,
                                         **trainer.state_dict()})
        if progress is not None and ctx.is_main:  # after saving: an interrupt raised here loses no finished step
            throughput = (step + 1 - run.start) * batch_size / max(time.perf_counter() - t0, 1e-9)
            progress(TrainProgress("train", step + 1, steps, loss, lr_now, throughput))
        if rungs is not None and (step + 1) % rungs.every == 0 and step + 1 < steps:
            cm = evaluate(trainer.eval_model, run.val_set, cfg["eval_images"], batch_size, trainer.device,
                          trainer.amp, cfg["eval_size"], ctx)
            rungs.callback(step + 1, cm.miou)  # may raise (a pruner stopping the run)
    seconds = time.perf_counter() - t0
    if progress is not None and ctx.is_main:
        done = (steps - run.start) * batch_size
        progress(TrainProgress("eval", steps, steps, run.losses[-1] if run.losses else float("nan"), 0.0,
                               done / max(seconds, 1e-9)))
    return seconds


def _record(run: _Run, cm: ConfusionMatrix, session_seconds: float, eval_seconds: float,
            checkpoint: str | Path | None) -> TrainRecord:
    cfg, trainer, spec = run.config, run.trainer, run.spec
    steps, images = cfg["steps"], (cfg["steps"] - run.start) * cfg["batch_size"]
    ious = cm.ious()
    notes = [n for n in [spec.input_size_note(tuple(cfg["input_size"]))] if n]
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
        checkpoint=str(checkpoint) if checkpoint is not None else None, spec=spec.to_dict(), notes=notes,
        crop_size=list(cfg["input_size"]), eval_size=cfg["eval_size"], eval_pixels=int(cm.counts.sum()),
        scale_range=list(cfg["scale_range"]), warmup_steps=cfg["warmup_steps"], schedule=cfg["schedule"], world_size=cfg["world_size"],
        sync_bn=cfg["sync_bn"], init=cfg["init"], skipped_steps=trainer.skipped_steps)


def _resume(checkpoint: str | Path | None, config: dict, trainer: Trainer) -> tuple[int, float, list[float]]:
    """(first step to run, seconds already trained, losses so far) from ``checkpoint``, if it exists."""
    if checkpoint is None:
        return 0, 0.0, []
    state = load_checkpoint(checkpoint)
    if state is None:
        return 0, 0.0, []
    check_config(checkpoint, {"schedule": "cosine", **state["config"]}, config)  # older checkpoints: cosine
    try:
        trainer.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint: {str(checkpoint)!r} does not match the model "
                              f"({type(exc).__name__})") from None
    return int(state["step"]), float(state["train_seconds"]), [float(v) for v in state["losses"]]

