"""What a study measures per candidate: accuracy (proxy or short training) and cost (latency, MACs, params).

The two heavy objectives come from other packages and are imported lazily, so a study that needs
neither (proxy accuracy, MACs or params cost) runs without them:

- ``short-train``: :func:`escale.train.train` (short-schedule training, mIoU on its validation split);
- measured latency: :func:`escale.profiler.latency.measure_latency` (the shared timing methodology).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from escale.errors import BackendUnavailableError, SpecError
from escale.search.proxy import proxy_miou
from escale.spec import ESegSpec

ACCURACY_OBJECTIVES = ("proxy", "short-train")
COST_AXES = ("latency", "macs", "params")
COST_UNITS = {"latency": "latency_ms", "macs": "macs", "params": "params"}


@dataclass(frozen=True)
class TrainSettings:
    """Short-schedule training for ``--accuracy short-train``. ``input_size`` None: the smallest square
    crop the space's largest ``max_level`` allows (2**max_level), at least 64."""

    steps: int = 100
    input_size: tuple[int, int] | None = None
    batch_size: int = 2
    seed: int = 0
    dataset: str = "synthetic"
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_accuracy(objective: str) -> None:
    """Fail before any trial when the accuracy objective is unknown or cannot run here."""
    if objective not in ACCURACY_OBJECTIVES:
        raise SpecError(f"--accuracy: {objective!r} is unknown (allowed: {', '.join(ACCURACY_OBJECTIVES)})")
    if objective == "short-train":
        try:
            from escale.train import train  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailableError(f"--accuracy short-train: escale.train is not available ({exc}); "
                                          "use --accuracy proxy") from None


def check_cost(cost: str) -> None:
    if cost not in COST_AXES:
        raise SpecError(f"--cost: {cost!r} is unknown (allowed: {', '.join(COST_AXES)})")


def accuracy(spec: ESegSpec, objective: str, macs: int, input_size: tuple[int, int],
             train: TrainSettings | None = None) -> dict[str, Any]:
    """``{"miou": % (0-100), "accuracy_objective": ..., ...}`` for one candidate: the proxy estimate
    (:mod:`escale.search.proxy`) or short training (:func:`escale.train.train`, mIoU on its val split)."""
    if objective == "proxy":
        res = proxy_miou(spec, macs, input_size)
        return {"miou": res.miou, "accuracy_objective": "proxy", "proxy_fit": res.fit,
                "proxy_gmacs_at_1024x2048": round(res.gmacs_at_1024x2048, 3)}
    check_accuracy(objective)
    from escale.train import train as run_train

    cfg = train or TrainSettings()
    size = tuple(cfg.input_size) if cfg.input_size else _train_size(spec)
    rec = run_train(spec, dataset=cfg.dataset, steps=cfg.steps, input_size=size, batch_size=cfg.batch_size,
                    seed=cfg.seed, device=cfg.device)
    # TrainRecord holds fractions in [0, 1]; studies keep mIoU in % like the paper and the proxy
    return {"miou": round(100.0 * float(rec.miou), 3), "accuracy_objective": "short-train",
            "pixel_acc_pct": round(100.0 * float(rec.pixel_acc), 3), "train_seconds": float(rec.train_seconds),
            "train_steps": cfg.steps, "train_input_size": list(size), "train_dataset": cfg.dataset}


def _train_size(spec: ESegSpec) -> tuple[int, int]:
    side = max(64, 2 ** spec.decoder.max_level)
    return side, side


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
