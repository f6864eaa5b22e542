"""A latency table made on one machine, calibrated for another in seconds (table transfer).

A table's kernels were timed on the machine that built it; on another machine they run faster or
slower, and not uniformly (wide SIMD helps dense convolutions more than resizes). nn-Meter answers with
one predictor per device, built from tens of thousands of models; here the user has one machine and a
few minutes, so :func:`calibrate_table` re-measures a little of the table, within ``budget_s`` (30 s):

1. **Anchors**: per family (squeeze-excite / activation: one per shipped space) up to
   :data:`MAX_ANCHORS` of the table's own calibration models, cheapest first -- models measured whole
   where the table was built, so each anchor's own fit error there is known ("twins") -- else the smallest
   paper preset of the build set; measured whole the onnxruntime backend's way (thread CPU time with one
   thread, median of 4 runs; the export is cached), once first and once more after the kernels: the
   lower median counts (a job on a sibling vCPU only ever slows a run down). Anchors are taken
   round-robin over families while the budget allows; a family without one takes the mean correction.
2. **Kernels**: per kernel class (:data:`escale.search.predictor.CLASSES`) the kernels at evenly spaced
   quantiles of the class's latency mass in the table, re-timed here by the table's own machinery,
   round-robin over classes until the budget is spent. Class ratio = median of (here / table): a
   median, so one disturbed kernel moves nothing.
3. **Correction**: per family, the median over its anchors of measured here / (table prediction with
   the class ratios applied), divided for a twin by the same ratio where the table was built (measured
   there / the table's prediction): what the machine changes, not what the table's fit already missed on
   that model. With one preset anchor, that model's own fit error (+-4% on 2026-11-30) biased every
   prediction; a family without an anchor takes the geometric mean of the others.

Prediction here = correction(family) x the table's own calibration applied to the per-class kernel sums
scaled by the class ratios. The result is a :class:`MachineCalibration`, saved as
``<home>/lut-calibrations/<table stem>@<fingerprint id>.json`` (:func:`calibration_path`) -- never
into the table. It records the table's identity (:meth:`LatencyTable.identity`), this machine's
fingerprint, what was measured and how long it took; it is used only where both still match
(:func:`machine_status`).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from escale import paths
from escale.errors import SpecError
from escale.profiler.latency.fingerprint import current_fingerprint, mismatch
from escale.search.kernels import Kernel
from escale.search.lut import OVERHEAD_KERNEL, LatencyTable, get_kernel_timer, model_call, time_model_call
from escale.search.predictor import CLASSES, LatencyPredictor, kernel_class
from escale.search.tablecheck import TableError
from escale.spec import ESegSpec

FORMAT = "escale-lut-calibration/1"
BUDGET_S = 24.0        # seconds of measuring at most (`lut calibrate` gives what start-up leaves of 27 s)
PER_CLASS = 10          # kernels sampled per class at most
KERNEL_RESERVE_S = 8.0  # seconds kept for kernels when choosing anchors
MAX_ANCHORS = 3         # anchors per family at most


class CalibrationError(TableError):
    """A calibration file is malformed, or made for another table or another machine."""


def family(spec: ESegSpec) -> str:
    """The anchor family of a spec: squeeze-excite and activation (one family per shipped space)."""
    return f"se={int(spec.encoder.se)},act={spec.encoder.act}"


@dataclass
class MachineCalibration:
    """Per-class kernel ratios and per-family model corrections of one table on one machine."""

    table: dict[str, Any]              # source, identity, settings
    fingerprint: dict[str, Any]        # this machine's (escale.profiler.latency.fingerprint)
    class_ratios: dict[str, float]     # kernel class -> median(here / table)
    corrections: dict[str, float]      # family -> measured / predicted-with-ratios
    kernels: list[dict[str, Any]] = field(default_factory=list)
    anchors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    created_at: str = ""
    load_avg_1m: float | None = None
    source: str | None = None

    def scale_classes(self, by_class: dict[str, float]) -> dict[str, float]:
        return {k: v * self.class_ratios.get(k, 1.0) for k, v in by_class.items()}

    def correction(self, spec: ESegSpec | None) -> float:
        if spec is not None and family(spec) in self.corrections:
            return self.corrections[family(spec)]
        values = list(self.corrections.values())
        return math.exp(sum(math.log(v) for v in values) / len(values)) if values else 1.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        return {"format": FORMAT, **d}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> MachineCalibration:
        _check(data, where)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "source"},
                   source=where)

    def save(self, path: str | Path) -> Path:
        """Write atomically (temporary file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        tmp.replace(path)
        self.source = str(path)
        return path


def _check(data: Any, where: str) -> None:
    def bad(name: str, value: Any, expected: str) -> CalibrationError:
        text = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        return CalibrationError(f"{where}: {name} is {text} (expected {expected})")

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise bad("format", got, f"{FORMAT!r}: a calibration written by `escale lut calibrate`")
    table = data.get("table")
    if not isinstance(table, dict) or not isinstance(table.get("identity"), str):
        raise bad("table.identity", (table or {}).get("identity", "missing") if isinstance(table, dict) else table,
                  "the identity of the calibrated table (16 hex digits)")
    fp = data.get("fingerprint")
    if not isinstance(fp, dict) or not isinstance(fp.get("id"), str):
        raise bad("fingerprint", fp if not isinstance(fp, dict) else "without an id", "a machine fingerprint")
    for name in ("class_ratios", "corrections"):
        value = data.get(name)
        ok = isinstance(value, dict) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
            for v in value.values())
        if not ok:
            raise bad(name, value if name in data else "missing", "an object of numbers > 0")
    unknown = set(data["class_ratios"]) - set(CLASSES)
    if unknown:
        raise bad("class_ratios", sorted(unknown), f"kernel classes among {', '.join(CLASSES)}")


def load_calibration(path: str | Path) -> MachineCalibration:
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"--calibration: {str(path)!r} does not exist (write one with `escale lut calibrate`)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return MachineCalibration.from_dict(data, str(path))


def table_fingerprint(table: LatencyTable, refresh: bool = False) -> dict[str, Any]:
    """This machine's fingerprint at the table's settings (performance part cached)."""
    return current_fingerprint(table.backend, table.device, table.precision, table.threads, table.input_size,
                               refresh=refresh)


def calibration_path(table: LatencyTable, fingerprint: dict[str, Any]) -> Path:
    """``<home>/lut-calibrations/<table stem>@<fingerprint id>.json`` (:func:`escale.paths.lut_calibrations_dir`)."""
    from escale.search.lut import table_name

    stem = Path(table.source).stem if table.source else Path(
        table_name(table.backend, table.device, table.precision, tuple(table.input_size), table.threads)).stem
    return paths.lut_calibrations_dir() / f"{stem}@{fingerprint['id']}.json"


def calibration_mismatch(cal: MachineCalibration, table: LatencyTable, fingerprint: dict[str, Any]) -> str | None:
    """None when ``cal`` is for this very table and this machine, else the first difference (one line)."""
    if cal.table.get("identity") != table.identity():
        return (f"table.identity is {cal.table.get('identity')!r} (expected {table.identity()!r}, the identity of "
                f"{table.source or 'the table'}: it calibrates another table or an earlier version of it)")
    why = mismatch(cal.fingerprint, fingerprint, "the calibration")
    return f"fingerprint: {why} -- it was made on another machine" if why else None


@dataclass
class MachineStatus:
    """Whether a table can price models here: built here, calibrated for here, or foreign."""

    fingerprint: dict[str, Any]
    table_mismatch: str | None            # None: the table was built on this machine
    calibration: MachineCalibration | None
    path: Path                            # where this machine's calibration of the table is (or would be)
    unused: str | None = None             # why a calibration file at ``path`` was not used

    @property
    def foreign(self) -> bool:
        """The table was built elsewhere and no calibration for this machine applies."""
        return self.table_mismatch is not None and self.calibration is None

    def describe(self) -> str:
        if self.calibration is not None:
            c = self.calibration
            return f"calibrated for this machine by {c.source} ({c.created_at}, {c.seconds:.1f} s)"
        if self.table_mismatch is None:
            return "built on this machine (fingerprint matches)"
        return f"built on another machine ({self.table_mismatch}); no calibration for this one"


def machine_status(table: LatencyTable, calibration: str | Path | None = None,
                   fingerprint: dict[str, Any] | None = None) -> MachineStatus:
    """How ``table`` relates to this machine. An explicit ``calibration`` file that does not fit is an error;
    the one found at :func:`calibration_path` is skipped (``unused`` says why) when it is stale. Without a
    ``fingerprint``, a mismatch in the reference-kernel timings alone is checked once more with a fresh
    measurement (a job on the sibling vCPU can slow one reference kernel by 30% for a while)."""
    fp = fingerprint or table_fingerprint(table)
    explicit = load_calibration(calibration) if calibration is not None else None
    path = Path(calibration) if calibration is not None else calibration_path(table, fp)
    found = explicit or (load_calibration(path) if path.is_file() else None)

    def judge(fp: dict[str, Any]) -> tuple[str | None, str | None]:
        return table.mismatch(fp), (calibration_mismatch(found, table, fp) if found is not None else None)

    table_why, cal_why = judge(fp)
    if fingerprint is None and "reference kernels take" in f"{table_why} {cal_why}":
        fp = table_fingerprint(table, refresh=True)
        table_why, cal_why = judge(fp)
    if explicit is not None and cal_why:
        raise CalibrationError(f"{calibration}: {cal_why}; calibrate with `escale lut calibrate --lut "
                               f"{table.source or 'TABLE'}`")
    return MachineStatus(fp, table_why, None if cal_why else found, path, cal_why)


# --- calibrating ---------------------------------------------------------------------------------------
def calibration_timing() -> Any:
    from escale.profiler.latency import TimingConfig

    return TimingConfig(warmup_runs=2, warmup_s=0.02, min_runs=5, min_duration_s=0.1, max_duration_s=1.0)


def twin_models(table: LatencyTable) -> dict[str, tuple[ESegSpec, float]]:
    """The table's own calibration models that carry their spec: spec_id -> (spec, ms measured where the
    table was built). Tables from before 2026-11-30 recorded no specs and have none."""
    out: dict[str, tuple[ESegSpec, float]] = {}
    for m in (table.calibration or {}).get("models", []):
        ms = m.get("measured_ms")
        if not (isinstance(m.get("spec"), dict) and isinstance(ms, (int, float)) and ms > 0):
            continue
        try:
            spec = ESegSpec.from_dict(m["spec"])
        except SpecError:
            continue
        if spec.spec_id == m.get("spec_id"):
            out[spec.spec_id] = (spec, float(ms))
    return out


def anchor_models(table: LatencyTable, predictor: Any) -> list[ESegSpec]:
    """Per family up to :data:`MAX_ANCHORS` twins (:func:`twin_models`), cheapest first; a family without
    twins: its smallest paper preset of the build set (Table 3 order), else its cheapest predicted model.
    Round-robin over families: every family's first anchor, cheapest family first, then the seconds..."""
    from escale.spec import TABLE3, preset

    cost = lambda s: predictor.predict(s).latency_ms  # noqa: E731
    twins: dict[str, list[ESegSpec]] = {}
    for spec, _ in twin_models(table).values():
        twins.setdefault(family(spec), []).append(spec)
    groups: dict[str, list[ESegSpec]] = {}
    for entry in table.built_from:
        spec = None
        if isinstance(entry.get("spec"), dict):
            spec = ESegSpec.from_dict(entry["spec"])
        elif entry.get("name") in TABLE3:
            spec = preset(entry["name"])
        if spec is not None and spec.spec_id == entry.get("spec_id") and family(spec) not in twins:
            groups.setdefault(family(spec), []).append(spec)
    order = list(TABLE3)
    ranked = [sorted(specs, key=cost)[:MAX_ANCHORS] for specs in twins.values()]
    for specs in groups.values():
        presets = [s for s in specs if s.name in TABLE3]
        ranked.append([min(presets, key=lambda s: order.index(s.name)) if presets else min(specs, key=cost)])
    return [spec for rank in range(MAX_ANCHORS)
            for spec in sorted((r[rank] for r in ranked if rank < len(r)), key=cost)]


def sample_kernels(table: LatencyTable, per_class: int = PER_CLASS) -> list[Kernel]:
    """Per class, kernels at evenly spaced quantiles of the class's latency mass; interleaved over classes."""
    by_class: dict[str, list[tuple[float, Kernel]]] = {c: [] for c in CLASSES}
    for key, entry in table.kernels.items():
        k = Kernel.from_key(key)
        by_class[kernel_class(k)].append((entry["latency_ms"], k))
    picks: dict[str, list[Kernel]] = {}
    for c, rows in by_class.items():
        rows.sort(key=lambda r: (r[0], r[1].key))
        total, acc, chosen = sum(r[0] for r in rows), 0.0, []
        targets = [(i + 0.5) / per_class * total for i in range(per_class)]
        for ms, k in rows:
            acc += ms
            while targets and acc >= targets[0]:
                targets.pop(0)
                if not chosen or chosen[-1] != k:
                    chosen.append(k)
        picks[c] = chosen
    return [picks[c][i] for i in range(per_class) for c in CLASSES if i < len(picks[c])]


def calibrate_table(table: LatencyTable, budget_s: float = BUDGET_S, kernel_timer: Callable | None = None,
                    model_timer: Callable[[ESegSpec], float] | None = None, fingerprint: dict[str, Any] | None = None,
                    on_step: Callable[[str], None] | None = None) -> MachineCalibration:
    """Measure anchors and sampled kernels here within ``budget_s`` and fit the calibration (module docstring).

    ``kernel_timer(kernel) -> {"raw_ms": ...}`` and ``model_timer(spec) -> ms`` replace the real ones (tests);
    ``on_step(message)`` reports each measurement. Nothing is written: see :meth:`MachineCalibration.save`.
    """
    t0 = time.perf_counter()
    fp = fingerprint or table_fingerprint(table)
    step = on_step or (lambda message: None)
    ktimer = kernel_timer or get_kernel_timer(table.backend, table.device, table.precision, table.threads,
                                              config=calibration_timing())
    mtimer = model_timer or AnchorTimer(table)
    base = _Memo(LatencyPredictor(table))  # each anchor is traced once
    elapsed = lambda: time.perf_counter() - t0  # noqa: E731
    measured: dict[str, tuple[ESegSpec, float]] = {}
    slow = 1.0  # how much longer than estimated the anchors took here (a loaded machine, a slow exporter)
    for spec in anchor_models(table, base):
        p = base.predict(spec)
        cost = 0.3 + 5e-3 * p.latency_ms  # 1 + 4 runs, and building, folding, exporting unless cached:
        cost += 0.0 if getattr(mtimer, "prepared", lambda s: False)(spec) else 0.2 + 0.02 * p.n_kernels
        if measured and elapsed() + slow * cost > budget_s - KERNEL_RESERVE_S:
            step(f"anchor {spec.name}: skipped (about {slow * cost:.0f} s; its family takes the mean correction)")
            continue
        t1 = time.perf_counter()
        measured[spec.spec_id] = (spec, float(mtimer(spec)))
        slow = max(slow, (time.perf_counter() - t1) / cost)
        step(f"anchor {spec.name}: {measured[spec.spec_id][1]:.2f} ms")
    again_s = sum(5e-3 * base.predict(s).latency_ms for s, _ in measured.values())  # a second timing at the end
    rows = _kernel_ratios(table, ktimer, lambda table_ms: elapsed() + 0.15 + 8e-3 * table_ms + again_s <= budget_s,
                          step)
    for sid, (spec, ms) in list(measured.items()):  # again, some seconds later: the lower median counts
        if elapsed() + 5e-3 * base.predict(spec).latency_ms <= budget_s + 0.3:
            measured[sid] = (spec, min(ms, float(mtimer(spec))))
            step(f"anchor {spec.name} again: {measured[sid][1]:.2f} ms (lower of two)")
    cal = MachineCalibration(
        table={"source": table.source, "identity": table.identity(), "settings": table.settings()},
        fingerprint=fp, class_ratios=_class_ratios(rows), corrections={}, kernels=rows,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        load_avg_1m=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
    scaled = LatencyPredictor(table, machine=cal)  # corrections still empty: the class ratios only
    twins = twin_models(table)
    for spec, ms in measured.values():
        p = base.predict(spec)
        here = scaled.calibrate_sum(p.sum_ms, p.by_class_ms)[0]
        row = {"name": spec.name, "spec_id": spec.spec_id, "family": family(spec), "measured_ms": round(ms, 4),
               "predicted_ms": round(here, 4), "correction": ms / here}
        if spec.spec_id in twins:  # the table's own error on this model, where it was built, is not the machine's
            there = twins[spec.spec_id][1]
            row.update(table_measured_ms=there, table_predicted_ms=round(p.latency_ms, 4),
                       correction=ms / here / (there / p.latency_ms))
        row["correction"] = round(row["correction"], 5)
        cal.anchors.append(row)
    for fam in {a["family"] for a in cal.anchors}:
        cal.corrections[fam] = statistics.median(a["correction"] for a in cal.anchors if a["family"] == fam)
    cal.seconds = round(elapsed(), 2)
    return cal


def _kernel_ratios(table: LatencyTable, timer: Callable, more: Callable[[float], bool],
                   step: Callable[[str], None]) -> list[dict[str, Any]]:
    """Re-time :func:`sample_kernels` here while ``more(table_ms)`` allows (at least one); here / table each."""
    overhead = timer(OVERHEAD_KERNEL)["raw_ms"]
    rows: list[dict[str, Any]] = []
    for k in sample_kernels(table):
        table_ms = table.kernels[k.key]["latency_ms"]
        if rows and not more(table_ms):
            break
        here = max(timer(k)["raw_ms"] - overhead, 1e-6)
        rows.append({"key": k.key, "class": kernel_class(k), "table_ms": round(table_ms, 6),
                     "here_ms": round(here, 6), "ratio": round(here / max(table_ms, 1e-6), 5)})
        step(f"kernel {len(rows)} {k.op} ({rows[-1]['class']}): x{rows[-1]['ratio']:.2f}")
    return rows


class _Memo:
    def __init__(self, predictor: LatencyPredictor) -> None:
        self.predictor, self.seen = predictor, {}

    def predict(self, spec: ESegSpec) -> Any:
        if spec.spec_id not in self.seen:
            self.seen[spec.spec_id] = self.predictor.predict(spec)
        return self.seen[spec.spec_id]


class AnchorTimer:
    """Whole anchor models on this machine, as the table's calibration models were measured (onnxruntime
    backend's way, the table's clock, median of 1 warm-up + ``runs`` runs); each model is prepared once, its
    export kept in ``$ESCALE_CACHE_DIR/lut-anchors/`` for the next calibration."""

    def __init__(self, table: LatencyTable, runs: int = 4) -> None:
        self.table, self.runs, self.calls = table, runs, {}

    def prepared(self, spec: ESegSpec) -> bool:
        """Whether the model is ready to time (its export cached)."""
        from escale.profiler.latency.base import cache_dir
        from escale.profiler.latency.onnxrt import OPSET

        h, w = self.table.input_size
        return spec.spec_id in self.calls or (cache_dir("lut-anchors") / (
            f"{spec.spec_id}-{h}x{w}-torch{torch_version()}-opset{OPSET}.onnx")).is_file()

    def __call__(self, spec: ESegSpec) -> float:
        from escale.profiler.latency import TimingConfig
        from escale.profiler.latency.base import cache_dir

        if spec.spec_id not in self.calls:
            self.calls[spec.spec_id] = model_call(spec, tuple(self.table.input_size), self.table.threads,
                                                  cache=cache_dir("lut-anchors"))
        cfg = TimingConfig(warmup_runs=1, warmup_s=0.0, min_runs=self.runs, min_duration_s=0.0)
        return time_model_call(self.calls[spec.spec_id], self.table.threads, self.table.timing.get("clock"),
                               config=cfg)["latency_ms"]


def torch_version() -> str:
    import torch

    return torch.__version__


def _class_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Median ratio per class; a class without samples takes the median over all samples (1 without any)."""
    overall = statistics.median(r["ratio"] for r in rows) if rows else 1.0
    out = {}
    for c in CLASSES:
        mine = [r["ratio"] for r in rows if r["class"] == c]
        out[c] = statistics.median(mine) if mine else overall
    return out
