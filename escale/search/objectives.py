"""What a study measures per candidate: accuracy (paper-trend estimate or short training) and cost
(latency, MACs, params).

The two heavy objectives come from other packages and are imported lazily, so a study that needs
neither (paper-trend accuracy, MACs or params cost) runs without them:

- ``short-train``: :func:`escale.train.train` (short-schedule training, mIoU on its validation split);
- measured latency: :func:`escale.profiler.latency.measure_latency` (the shared timing methodology).
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from escale.errors import BackendUnavailableError, SpecError, SpecNote
from escale.search.proxy import OBJECTIVE as PAPER_TREND
from escale.search.proxy import proxy_miou
from escale.spec import ESegSpec

ACCURACY_OBJECTIVES = (PAPER_TREND, "short-train")
ACCURACY_ALIASES = {"proxy": PAPER_TREND}  # deprecated names -> current ones
COST_AXES = ("latency", "macs", "params")
COST_UNITS = {"latency": "latency_ms", "macs": "macs", "params": "params"}
TRAIN_DATASETS = ("synthetic", "cityscapes", "ade20k")


@dataclass(frozen=True)
class TrainSettings:
    """Short-schedule training for ``--accuracy short-train``, the same for every candidate of a study.

    ``input_size`` (H, W) is the training crop of every candidate (None: the dataset's protocol crop,
    resolved by :func:`check_training`); ``lr``/``warmup_steps``/``ohem``/``schedule``/``weight_decay``
    None: the dataset's defaults (``schedule``: cosine or onecycle, see :mod:`escale.train.trainer`).
    ``rungs`` > 0 evaluates the model ``rungs`` times during training (every ``steps // (rungs + 1)``
    steps) so a pruner can stop a poor candidate early; 0 evaluates at the end only. ``seeds`` > 1 trains
    each candidate once per seed (``seed``, ``seed + 1``, ...) and scores the mean mIoU: on the rank
    benchmark one seed ranked six variants at a mean Spearman's rho of 0.61 between seeds (12 seeds), the
    mean of two at 0.86 between disjoint 2-seed groups (reports/rank/). With rungs, they come from the first
    seed, and the running mean is reported after each seed (at ``steps``, ``2 * steps``, ...), so a pruner
    can also stop before the next seed.
    """

    steps: int = 100
    input_size: tuple[int, int] | None = None
    batch_size: int = 2
    seed: int = 0
    dataset: str = "synthetic"
    device: str = "cpu"
    data_root: str | None = None
    lr: float | None = None
    warmup_steps: int | None = None
    ohem: bool | None = None
    eval_images: int = 16
    rungs: int = 0
    threads: int | None = None
    schedule: str | None = None
    weight_decay: float | None = None
    seeds: int = 1

    @property
    def eval_every(self) -> int | None:
        """Steps between intermediate evaluations (None: no rungs)."""
        return max(1, self.steps // (self.rungs + 1)) if self.rungs else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size) if self.input_size else None
        for key, unset in (("schedule", None), ("weight_decay", None), ("seeds", 1)):
            if d[key] == unset:  # unset: as in studies made before the key existed (they stay resumable)
                del d[key]
        return d


def canonical_accuracy(objective: str) -> str:
    """The current name of an accuracy objective; a deprecated alias gives one :class:`SpecNote`."""
    if objective in ACCURACY_ALIASES:
        new = ACCURACY_ALIASES[objective]
        warnings.warn(SpecNote(f"--accuracy {objective} is now called {new} (an estimate from the paper's "
                               "FLOPs trend); the old name will go"), stacklevel=2)
        return new
    return objective


def check_accuracy(objective: str) -> None:
    """Fail before any trial when the accuracy objective is unknown or cannot run here."""
    if objective not in ACCURACY_OBJECTIVES:
        raise SpecError(f"--accuracy: {objective!r} is unknown (allowed: {', '.join(ACCURACY_OBJECTIVES)})")
    if objective == "short-train":
        try:
            from escale.train import train  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailableError(f"--accuracy short-train: escale.train is not available ({exc}); "
                                          f"use --accuracy {PAPER_TREND}") from None


def check_training(cfg: TrainSettings) -> TrainSettings:
    """Check dataset, data root, device and sizes before the first trial; returns the settings with the
    training size resolved (the dataset's protocol crop when None)."""
    from escale.data import make_dataset
    from escale.data.base import split_options
    from escale.train.loop import resolve_device
    from escale.train.protocol import protocol_for
    from escale.train.trainer import SCHEDULES

    name = split_options(cfg.dataset)[0]
    if name not in TRAIN_DATASETS:
        raise SpecError(f"--dataset: {cfg.dataset!r} is unknown (allowed: {', '.join(TRAIN_DATASETS)}, "
                        "synthetic:KEY=VALUE,...)")
    if name != "synthetic" and not cfg.data_root:
        raise SpecError(f"--data-root: {name} needs the folder holding its files (allowed: an existing folder)")
    for field_name, value in (("--train-steps", cfg.steps), ("--batch", cfg.batch_size),
                              ("--train-seeds", cfg.seeds)):
        if not isinstance(value, int) or value < 1:
            raise SpecError(f"{field_name}: {value!r} is not allowed (allowed: a whole number >= 1)")
    if not isinstance(cfg.rungs, int) or not 0 <= cfg.rungs < cfg.steps:
        raise SpecError(f"--rungs: {cfg.rungs!r} is not allowed (allowed: 0..{cfg.steps - 1})")
    if cfg.schedule is not None and cfg.schedule not in SCHEDULES:
        raise SpecError(f"--schedule: {cfg.schedule!r} is unknown (allowed: {', '.join(SCHEDULES)})")
    if cfg.weight_decay is not None and not (isinstance(cfg.weight_decay, (int, float)) and cfg.weight_decay >= 0):
        raise SpecError(f"--weight-decay: {cfg.weight_decay!r} is not allowed (allowed: a number >= 0)")
    resolve_device(cfg.device, None)
    probe = make_dataset(cfg.dataset, "val", cfg.data_root, size=None)  # a missing root fails here, one line
    size = tuple(cfg.input_size) if cfg.input_size else protocol_for(probe).crop_size
    return replace(cfg, input_size=(int(size[0]), int(size[1])))


def check_cost(cost: str) -> None:
    if cost not in COST_AXES:
        raise SpecError(f"--cost: {cost!r} is unknown (allowed: {', '.join(COST_AXES)})")


Report = Callable[[int, float], None]  # (training step, mIoU %) at an evaluation rung; may raise to stop


def accuracy(spec: ESegSpec, objective: str, macs: int, input_size: tuple[int, int],
             train: TrainSettings | None = None, report: Report | None = None) -> dict[str, Any]:
    """``{"miou": % (0-100), "accuracy_objective": ..., ...}`` for one candidate: the paper-trend estimate
    (:mod:`escale.search.proxy`) or short training (:func:`escale.train.train`, mIoU on its val split).
    ``report(step, miou)`` receives the mIoU (%) at each evaluation rung of the training."""
    objective = ACCURACY_ALIASES.get(objective, objective)
    if objective == PAPER_TREND:
        res = proxy_miou(spec, macs, input_size)
        return {"miou": res.miou, "accuracy_objective": PAPER_TREND, "trend_fit": res.fit,
                "trend_gmacs_at_1024x2048": round(res.gmacs_at_1024x2048, 3)}
    check_accuracy(objective)
    from escale.train import train as run_train

    cfg = train or TrainSettings()
    if cfg.input_size is None:
        raise SpecError("short-train: the training size is not resolved (use check_training first)")
    records = []
    for i in range(cfg.seeds):
        first = i == 0 and report is not None and cfg.rungs
        on_eval = (lambda step, miou: report(step, 100.0 * miou)) if first else None
        records.append(run_train(spec, dataset=cfg.dataset, steps=cfg.steps, input_size=tuple(cfg.input_size),
                                 batch_size=cfg.batch_size, seed=cfg.seed + i, device=cfg.device,
                                 data_root=cfg.data_root, lr=cfg.lr, warmup_steps=cfg.warmup_steps, ohem=cfg.ohem,
                                 eval_images=cfg.eval_images, threads=cfg.threads,
                                 eval_every=cfg.eval_every if first else None, on_eval=on_eval,
                                 schedule=cfg.schedule, weight_decay=cfg.weight_decay))
        if report is not None and cfg.rungs and i < cfg.seeds - 1:  # the running mean, before the next seed
            report((i + 1) * cfg.steps, 100.0 * statistics.fmean(float(r.miou) for r in records))
    # TrainRecord holds fractions in [0, 1]; studies keep mIoU in % like the paper
    mious = [100.0 * float(r.miou) for r in records]
    out = {"miou": round(statistics.fmean(mious), 3), "accuracy_objective": "short-train",
           "pixel_acc_pct": round(100.0 * statistics.fmean(float(r.pixel_acc) for r in records), 3),
           "train_seconds": sum(float(r.train_seconds) for r in records), "train_steps": cfg.steps,
           "train_steps_done": cfg.steps * cfg.seeds, "train_input_size": list(cfg.input_size),
           "train_dataset": cfg.dataset}
    if cfg.seeds > 1:
        out.update(train_seeds=cfg.seeds, miou_per_seed=[round(m, 3) for m in mious],
                   miou_seed_std=round(statistics.stdev(mious), 3))
    return out


def measure(spec: ESegSpec, backend: str, device: str, precision: str, input_size: tuple[int, int],
            threads: int | None, timing: Any = None) -> dict[str, Any]:
    """Measured latency (median, ms) of one candidate by the shared methodology of escale.profiler.latency."""
    try:
        from escale.profiler.latency import measure_latency
    except ImportError as exc:
        raise BackendUnavailableError(f"measured latency: escale.profiler.latency is not available ({exc}); "
                                      "use --no-measure with a latency table (--lut)") from None
    kwargs: dict[str, Any] = {"backend": backend, "device": device, "precision": precision,
                              "input_size": tuple(input_size), "batch": 1, "threads": threads}
    if timing is not None:
        kwargs["config"] = timing
    res = measure_latency(spec, **kwargs)
    return {"latency_ms": float(res.latency_ms)}
