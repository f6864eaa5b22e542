"""Tables over saved profile records: the family table with the paper's figures beside escale's."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from escale.errors import EscaleError
from escale.report.reference import paper_miou
from escale.spec import ESegSpec, paper_model_name

# Measured by the latency backends when a record carries them (ProfileRecord.extra); shown only then.
LATENCY_COLUMNS = ("latency_ms", "latency_p90_ms", "fps", "peak_mem_mb")
# column -> ProfileRecord.extra key written by the latency backends (fallback: the same key in extra["env"])
LATENCY_META = {"latency_input_size": "latency_input_size", "backend": "latency_backend",
                "device": "device_name", "precision": "latency_precision", "threads": "latency_threads"}
VOLATILE_ENV_KEYS = ("load_avg_1m",)  # differ between records of one run; shown apart
# Exact, machine-independent columns of the committed family table (checked by the tests).
FAMILY_COLUMNS = ("name", "input_size", "width", "depth", "block", "channels", "repeats", "levels", "params",
                  "macs", "params_m", "gmacs", "paper_params_m", "paper_gmacs", "paper_source", "params_dev_pct",
                  "gmacs_dev_pct", "miou", "miou_source")


def _level_range(dec: dict[str, Any]) -> str:
    return f"P{dec['min_level']}-P{dec['max_level']}"


def family_table(records: Iterable[Any]):
    """One row per record: scaling parameters, params/MACs, the paper's figures, deviation, mIoU.

    ``params`` is a count, ``macs`` multiply-adds at batch 1 (the paper's "FLOPs"), ``*_m`` millions,
    ``gmacs`` billions; ``*_dev_pct`` is escale vs the paper in percent (FLOPs only at 1024x2048).
    ``miou`` (%) is the record's own (``extra["miou"]``, trained by escale) when present, else the paper's
    when the record's spec is a Table 3 model (matched by configuration, not by name). Records of generic
    modules have no scaling columns.
    Latency columns (ms, FPS, MB) and the environment appear only when some record was measured.
    """
    import pandas as pd

    rows = []
    for r in records:
        trained = r.extra.get("miou")
        spec = ESegSpec.from_dict(r.spec) if r.kind == "eseg" else None
        paper_name = paper_model_name(spec) if spec is not None else None  # by configuration, not by name
        paper = paper_miou(paper_name) if paper_name else None
        row = {"name": r.name, "input_size": f"{r.input_size[0]}x{r.input_size[1]}"}
        if spec is not None:
            dec = r.spec["decoder"]
            row.update({"width": spec.encoder.width, "depth": spec.encoder.depth, "block": spec.encoder.block_label,
                        "channels": dec["channels"], "repeats": dec["repeats"], "levels": _level_range(dec)})
        row.update({
            "params": int(r.params), "macs": int(r.macs),
            "params_m": round(r.params_m, 3), "gmacs": round(r.gmacs, 2),
            "paper_params_m": r.paper_params_m, "paper_gmacs": r.paper_gmacs, "paper_source": r.paper_source,
            "params_dev_pct": _round(r.params_dev_pct, 1), "gmacs_dev_pct": _round(r.gmacs_dev_pct, 1),
            "miou": trained if trained is not None else (paper[0] if paper else None),
            "miou_source": "escale train" if trained is not None else (f"paper {paper[1]}" if paper else None),
        })
        for key in LATENCY_COLUMNS:
            if r.extra.get(key) is not None:
                row[key] = float(r.extra[key])
        env = r.extra.get("env") or {}
        if row.get("latency_ms") is not None:
            for col, key in LATENCY_META.items():
                value = r.extra.get(key, env.get(col))
                if value is not None:
                    row[col] = value
        rows.append(row)
    frame = pd.DataFrame(rows)
    order = [c for c in FAMILY_COLUMNS if c in frame] + [c for c in frame if c not in FAMILY_COLUMNS]
    return frame[order] if len(frame) else pd.DataFrame(columns=list(FAMILY_COLUMNS))


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits) + 0.0  # + 0.0: no "-0.0"


def has_latency(table) -> bool:
    """Whether any row of a family table carries a measured latency."""
    return "latency_ms" in table and table["latency_ms"].notna().any()


def environments(records: Iterable[Any]) -> list[dict[str, Any]]:
    """The distinct measurement environments (``extra["env"]`` dicts, less volatile keys) in the records."""
    seen, out = set(), []
    for r in records:
        env = {k: v for k, v in (r.extra.get("env") or {}).items() if k not in VOLATILE_ENV_KEYS}
        if env:
            key = json.dumps(env, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                out.append(env)
    return out


def load_records(path: str | Path) -> list:
    """Profile records from a JSON file (``escale profile --format json`` output, a list of records)."""
    from escale.profiler import ProfileRecord

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise EscaleError(f"--records: cannot read {path} ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise EscaleError(f"--records: {path} is not JSON ({exc.msg}, line {exc.lineno})") from None
    if isinstance(data, dict):
        data = [data]
    try:
        return [ProfileRecord.from_dict(d) for d in data]
    except (KeyError, TypeError) as exc:
        raise EscaleError(f"--records: {path} does not hold profile records (missing {exc})") from None


def save_records(records: Iterable[Any], path: str | Path) -> Path:
    """Write records as JSON (the input a report is rebuilt from)."""
    path = Path(path)
    rows = [{k: v for k, v in r.to_dict().items() if k != "units"} for r in records]
    path.write_text(json.dumps(rows, indent=1, default=str) + "\n", encoding="utf-8")
    return path
