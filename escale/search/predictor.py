"""Latency prediction from a kernel table: sum of kernel latencies, then a calibration fit.

``predict(spec)`` enumerates the spec's kernels (one meta-device pass, no weights) and adds their
table latencies. A kernel missing from the table is *estimated* from the table's kernels of the same
kind and shape signature (same op, kernel size, stride, grouping, activation, spatial size; only
channel counts differ): the nearest one in work (MACs for convs, elements otherwise), scaled by the
work ratio; failing that, a least-squares line over all kernels of that op. Kernels no rule covers
are listed as ``unpriced``, never silently priced at zero.

The sum of isolated kernels misses what a backend gains or loses across kernel boundaries (ONNX
Runtime's NCHWc layout reorders around each isolated conv, fused residual adds, cache reuse). A
calibration fitted on a few measured full models corrects the systematic part: one slope per kernel
class (dense kxk convs, 1x1 convs, depthwise convs, resizes, the rest; least squares pulled towards 1),
or a single ``latency = slope * sum``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch

from escale.search.kernels import Kernel, model_kernels
from escale.search.lut import LatencyTable, TableError
from escale.spec import ESegSpec

CHANNEL_ATTRS = ("cin", "cout", "c", "g")


@dataclass
class Prediction:
    """A predicted latency (ms) and how it was composed."""

    latency_ms: float
    sum_ms: float
    n_kernels: int
    n_found: int
    n_estimated: int
    unpriced: list[str] = field(default_factory=list)
    by_op_ms: dict[str, float] = field(default_factory=dict)
    by_class_ms: dict[str, float] = field(default_factory=dict)
    calibrated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def work(k: Kernel) -> float:
    """Work of a kernel: multiply-adds for a conv, elements touched otherwise."""
    a = dict(k.attrs)
    if k.op == "conv":
        ho = (a["h"] + 2 * a["p"] - a["d"] * (a["k"] - 1) - 1) // a["s"] + 1
        wo = (a["w"] + 2 * a["p"] - a["d"] * (a["k"] - 1) - 1) // a["s"] + 1
        return float(a["cout"] * (a["cin"] // a["g"]) * a["k"] ** 2 * ho * wo + a["cin"] * a["h"] * a["w"])
    if k.op == "resize":
        return float(a["c"] * (a["ho"] * a["wo"] * (4 if a["mode"] == "bilinear" else 1) + a["h"] * a["w"]))
    if k.op == "wsum":
        return float(a["n"] * a["c"] * a["h"] * a["w"])
    if k.op == "pool":
        return float(a["c"] * a["h"] * a["w"] * a["k"] ** 2 / a["s"] ** 2)
    return float(a.get("c", 1) * a.get("h", 1) * a.get("w", 1) or a.get("n", 1))


def kernel_class(k: Kernel) -> str:
    """Calibration class: ``conv_kxk`` (dense, k > 1), ``conv_1x1``, ``conv_dw`` (grouped), ``resize``, ``other``."""
    if k.op == "conv":
        a = dict(k.attrs)
        return "conv_dw" if a["g"] > 1 else ("conv_1x1" if a["k"] == 1 else "conv_kxk")
    return "resize" if k.op == "resize" else "other"


CLASSES = ("conv_kxk", "conv_1x1", "conv_dw", "resize", "other")
PRIOR_WEIGHT = 0.01  # ridge pull of each class slope towards 1 (the plain sum), relative to the data


def signature(k: Kernel) -> tuple:
    """Everything but channel counts (depthwise-ness kept): kernels that scale like each other."""
    a = dict(k.attrs)
    depthwise = k.op == "conv" and a["g"] > 1 and a["g"] == a["cin"]
    return (k.op, depthwise, tuple((n, v) for n, v in k.attrs if n not in CHANNEL_ATTRS))


class LatencyPredictor:
    """Prices specs from a :class:`LatencyTable` (see the module docstring); ``machine``, a
    :class:`escale.search.calibration.MachineCalibration`, carries the table over to this machine."""

    def __init__(self, table: LatencyTable, machine: Any = None) -> None:
        self.table = table
        self.source = table.source
        self.machine = machine
        self.status: Any = None  # a MachineStatus when loaded by escale.search.proposals.load_predictor
        self._by_sig: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
        self._by_op: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for key, entry in table.kernels.items():
            k = Kernel.from_key(key)
            self._by_sig[signature(k)].append((work(k), entry["latency_ms"]))
            self._by_op[k.op].append((work(k), entry["latency_ms"]))
        self._lines = {op: _fit_line(pts) for op, pts in self._by_op.items()}

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.table.input_size)

    def kernel_ms(self, k: Kernel) -> tuple[float | None, str]:
        """(latency ms, how): ``table``, ``neighbour``, ``line`` or (None, ``unpriced``)."""
        entry = self.table.kernels.get(k.key)
        if entry is not None:
            return entry["latency_ms"], "table"
        wk = work(k)
        near = self._by_sig.get(signature(k))
        if near:
            w0, ms0 = min(near, key=lambda p: abs(math.log(max(p[0], 1.0) / max(wk, 1.0))))
            return ms0 * wk / max(w0, 1.0), "neighbour"
        line = self._lines.get(k.op)
        if line is not None:
            return max(line[0] * wk + line[1], 0.0), "line"
        return None, "unpriced"

    def predict(self, spec: ESegSpec, input_size: tuple[int, int] | None = None) -> Prediction:
        """Predicted latency (ms) of ``spec`` at the table's input size (another size is an error)."""
        size = tuple(input_size or self.table.input_size)
        if size != tuple(self.table.input_size):
            raise TableError(f"predict: the table {self.source or ''} is for input {self.table.input_size}, "
                             f"not {size} (build one with `escale lut build --input-size ...`)")
        kernels = model_kernels(spec, size)
        total, found, est, unpriced = 0.0, 0, 0, []
        by_op: dict[str, float] = defaultdict(float)
        by_class: dict[str, float] = dict.fromkeys(CLASSES, 0.0)
        for k in kernels:
            ms, how = self.kernel_ms(k)
            if ms is None:
                unpriced.append(k.key)
                continue
            found += how == "table"
            est += how != "table"
            total += ms
            by_op[k.op] += ms
            by_class[kernel_class(k)] += ms
        lat, cal = self.calibrate_sum(total, by_class, spec)
        return Prediction(latency_ms=lat, sum_ms=total, n_kernels=len(kernels), n_found=found, n_estimated=est,
                          unpriced=unpriced, by_op_ms=dict(by_op), by_class_ms=by_class, calibrated=cal)

    def breakdown(self, spec: ESegSpec, input_size: tuple[int, int] | None = None) -> LatencyBreakdown:
        """Where the predicted time of ``spec`` goes: per part, per pyramid level, per distinct kernel (ms).

        Each kernel is priced as in :meth:`predict` and carried through the calibration on its own (its
        class slope); what the calibration adds regardless of the kernels (an intercept) is ``fixed_ms``.
        The parts therefore sum to the prediction, like the MACs breakdown sums to the MACs.
        """
        from escale.profiler.counters import part_of
        from escale.profiler.dispatch import level_namer
        from escale.search.kernels import model_kernel_sites

        size = tuple(input_size or self.table.input_size)
        total = self.predict(spec, size)
        fixed = self.calibrate_sum(0.0, dict.fromkeys(CLASSES, 0.0), spec)[0]
        level_of = level_namer(size, spec.decoder.max_level)
        parts: dict[str, float] = {p: 0.0 for p in ("encoder", "decoder", "head")}
        levels: dict[str, float] = defaultdict(float)
        kernels: dict[str, list] = {}
        for site in model_kernel_sites(spec, size):
            ms, _how = self.kernel_ms(site.kernel)
            if ms is None:
                continue
            cls = kernel_class(site.kernel)
            ms = self.calibrate_sum(ms, {**dict.fromkeys(CLASSES, 0.0), cls: ms}, spec)[0] - fixed
            parts[part_of(site.module)] += ms
            levels[level_of(torch.empty(site.out_shape, device="meta"))] += ms
            entry = kernels.setdefault(site.kernel.key, [0, 0.0])
            entry[0] += 1
            entry[1] += ms
        by_kernel = [{"kernel": k, "op": k.split(":")[0], "count": n, "ms": ms}
                     for k, (n, ms) in sorted(kernels.items(), key=lambda kv: -kv[1][1])]
        return LatencyBreakdown(total_ms=total.latency_ms, fixed_ms=fixed, by_part_ms=parts,
                                by_level_ms=dict(sorted(levels.items(), key=lambda kv: _level_key(kv[0]))),
                                by_kernel=by_kernel, unpriced=total.unpriced, calibrated=total.calibrated)

    def calibrate_sum(self, sum_ms: float, by_class: dict[str, float] | None = None,
                      spec: ESegSpec | None = None) -> tuple[float, bool]:
        """(latency ms, calibrated?) from the table's kernel sums: the machine calibration's class ratios,
        then the table's own calibration, then the machine calibration's correction for ``spec``'s family."""
        if self.machine is None:
            return self._table_calibration(sum_ms, by_class)
        if by_class is not None:
            by_class = self.machine.scale_classes(by_class)
            sum_ms = sum(by_class.values())
        lat, _ = self._table_calibration(sum_ms, by_class)
        return lat * self.machine.correction(spec), True

    def _table_calibration(self, sum_ms: float, by_class: dict[str, float] | None) -> tuple[float, bool]:
        c = self.table.calibration
        if not c:
            return sum_ms, False
        if c.get("slopes") and by_class is not None:
            return sum(c["slopes"][k] * by_class.get(k, 0.0) for k in CLASSES), True
        return c["slope"] * sum_ms + c.get("intercept_ms", 0.0), True

    def fit_calibration(self, specs: list[ESegSpec], measured_ms: list[float], mode: str = "auto",
                        ) -> dict[str, Any]:
        """Fit the calibration on measured full models; stores it in the table and returns it.

        ``ratio``: ``latency = slope * sum``. ``linear``: ``slope * sum + intercept_ms`` (>= 3 models).
        ``classes``: one slope per kernel class (:data:`CLASSES`), least squares with a ridge pull of
        every slope towards 1 (classes the models barely exercise keep their table value), within
        [0.25, 4]. ``auto`` (default): the mode with the lowest leave-one-out median error on these
        models (ratio with fewer than 4).
        """
        if len(specs) != len(measured_ms) or not specs:
            raise TableError("calibrate: give one measured latency per spec (at least one)")
        if self.machine is not None:
            raise TableError("calibrate: a table's own calibration is fitted where it was built, without a "
                             "machine calibration")
        if mode not in CALIBRATIONS + ("auto",):
            raise TableError(f"calibrate: mode {mode!r} is unknown (allowed: auto, {', '.join(CALIBRATIONS)})")
        self.table.calibration = None
        preds = [self.predict(s) for s in specs]
        rows = [(p.sum_ms, [p.by_class_ms[k] for k in CLASSES], m) for p, m in zip(preds, measured_ms, strict=True)]
        loo = {m: _loo_error(m, rows) for m in CALIBRATIONS} if len(rows) >= 4 else {}
        if mode == "auto":
            mode = min(loo, key=loo.get) if loo else "ratio"
        if mode == "linear" and len(rows) < 3:
            raise TableError(f"calibrate: mode 'linear' needs >= 3 models, got {len(rows)}")
        cal: dict[str, Any] = {"mode": mode, **_fit(mode, rows), "loo_median_abs_err_pct": loo}
        cal["models"] = [{"name": s.name, "spec_id": s.spec_id, "sum_ms": round(r[0], 4), "measured_ms": round(r[2], 4),
                          "spec": s.to_dict()} for s, r in zip(specs, rows, strict=True)]
        self.table.calibration = cal
        return cal


CALIBRATIONS = ("ratio", "linear", "classes")


@dataclass
class LatencyBreakdown:
    """Predicted ms of one model per part (encoder / decoder / head), per pyramid level (by output size;
    ``global`` = 1x1 squeeze-excite maps) and per distinct kernel (all its runs); ``fixed_ms`` is what the
    calibration adds regardless of kernels. The parts plus ``fixed_ms`` sum to ``total_ms``."""

    total_ms: float
    fixed_ms: float
    by_part_ms: dict[str, float]
    by_level_ms: dict[str, float]
    by_kernel: list[dict[str, Any]]
    unpriced: list[str] = field(default_factory=list)
    calibrated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _level_key(level: str) -> int:
    return int(level[1:]) if level.startswith("P") else 99


def _fit(mode: str, rows: list[tuple[float, list[float], float]]) -> dict[str, Any]:
    """Calibration parameters from (sum_ms, per-class ms, measured ms) rows."""
    sums, meas = [r[0] for r in rows], [r[2] for r in rows]
    out: dict[str, Any] = {"slope": sum(m * s for m, s in zip(meas, sums, strict=True)) / sum(s * s for s in sums),
                           "intercept_ms": 0.0}
    if mode == "linear":
        out["slope"], out["intercept_ms"] = _fit_line(list(zip(sums, meas, strict=True)))
    elif mode == "classes":
        out["slopes"] = _ridge_slopes([r[1] for r in rows], meas)
    return out


def _apply(cal: dict[str, Any], sum_ms: float, by_class: list[float]) -> float:
    if cal.get("slopes"):
        return sum(cal["slopes"][k] * v for k, v in zip(CLASSES, by_class, strict=True))
    return cal["slope"] * sum_ms + cal["intercept_ms"]


def _loo_error(mode: str, rows: list[tuple[float, list[float], float]]) -> float:
    """Median |relative error| (%) predicting each model from a fit on the others."""
    import statistics

    errs = []
    for i, (s, c, m) in enumerate(rows):
        cal = _fit(mode, rows[:i] + rows[i + 1:])
        errs.append(abs(100.0 * (_apply(cal, s, c) / m - 1)))
    return statistics.median(errs)


def _ridge_slopes(x: list[list[float]], y: list[float]) -> dict[str, float]:
    """Per-class slopes: least squares of ``y`` on ``x`` with a ridge pull towards 1, clipped to [0.25, 4]."""
    import numpy as np

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    scale = np.sqrt(PRIOR_WEIGHT * len(b)) * np.maximum(a.mean(axis=0), 1e-9)
    a_aug = np.vstack([a, np.diag(scale)])
    b_aug = np.concatenate([b, scale])  # prior rows: scale_c * slope_c = scale_c * 1
    slopes = np.clip(np.linalg.lstsq(a_aug, b_aug, rcond=None)[0], 0.25, 4.0)
    return {k: float(v) for k, v in zip(CLASSES, slopes, strict=True)}


def _fit_line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares (slope, intercept) of y on x; through the origin for a single point."""
    if not points:
        return None
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if n == 1 or sxx == 0:
        return (my / mx if mx else 0.0), 0.0
    slope = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx
    return slope, my - slope * mx
