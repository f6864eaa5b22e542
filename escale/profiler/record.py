"""Profile records: one flat, serialisable result per (spec, input size, counter)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from escale.spec import ESegSpec, paper_reference

UNITS = {
    "params": "count of parameters",
    "macs": "multiply-adds (one fused multiply-add = 1; the paper's 'FLOPs'), batch 1",
    "other_ops": "elementwise/resize/pooling/reduction operations, counted apart from MACs",
    "input_size": "(H, W) pixels",
    "macs_by_module": "multiply-adds per module path, summed to module_depth levels ('' = the model itself)",
}


@dataclass
class ProfileRecord:
    """Params and MACs of one spec. Integers are exact counts; ``*_m``/``g*`` fields are derived."""

    name: str
    spec_id: str
    input_size: tuple[int, int]
    batch: int
    counter: str
    convention: str
    params: int
    params_by_part: dict[str, int]
    macs: int
    macs_by_part: dict[str, int]
    macs_by_level: dict[str, int]
    macs_by_operator: dict[str, int]
    other_ops: dict[str, int]
    ops_not_counted: dict[str, int]
    spec: dict[str, Any]
    paper_params_m: float | None = None
    paper_gmacs: float | None = None
    paper_source: str | None = None  # the table giving the figures, e.g. "Table 1 P2-P5"; None: not a paper model
    kind: str = "eseg"  # "eseg" (a spec) or "module" (any nn.Module: no parts, levels or paper figures)
    source: str | None = None  # how a module was given: "timm:resnet50", "module:pkg.mod:fn", a class name
    macs_by_module: dict[str, int] = field(default_factory=dict)
    params_by_module: dict[str, int] = field(default_factory=dict)
    module_depth: int = 3
    notes: list[str] = field(default_factory=list)  # e.g. "P8-P9 are 1x1 at 128x256 (...)"
    extra: dict[str, Any] = field(default_factory=dict)  # latency, memory, environment (other issues)

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def params_dev_pct(self) -> float | None:
        return None if self.paper_params_m is None else 100.0 * (self.params_m / self.paper_params_m - 1)

    @property
    def gmacs_dev_pct(self) -> float | None:
        """Deviation from the paper's FLOPs (a record carries them only at the paper's 1024x2048)."""
        if self.paper_gmacs is None:
            return None
        return 100.0 * (self.gmacs / self.paper_gmacs - 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d.update(params_m=self.params_m, gmacs=self.gmacs, params_dev_pct=self.params_dev_pct,
                 gmacs_dev_pct=self.gmacs_dev_pct, units=UNITS)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileRecord:
        names = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["input_size"] = tuple(kwargs["input_size"])
        return cls(**kwargs)


def make_record(spec: ESegSpec, input_size: tuple[int, int], params: int, params_by_part: dict[str, int],
                counted: Any, **fields: Any) -> ProfileRecord:
    """The record of an ESeg spec; paper figures only when the spec and input size are the paper's."""
    paper = paper_reference(spec, input_size)
    note = spec.input_size_note(input_size)
    return ProfileRecord(
        name=spec.name, spec_id=spec.spec_id, input_size=tuple(input_size), batch=1,
        counter=counted.counter, convention=counted.convention, params=params, params_by_part=params_by_part,
        macs=counted.macs, macs_by_part=counted.macs_by_part, macs_by_level=counted.macs_by_level,
        macs_by_operator=counted.macs_by_operator, other_ops=counted.other_ops,
        ops_not_counted=counted.ops_not_counted, spec=spec.to_dict(),
        paper_params_m=paper.params_m if paper else None, paper_gmacs=paper.gmacs if paper else None,
        paper_source=paper.source if paper else None, notes=[note] if note else [], **fields,
    )


def records_to_frame(records: list[ProfileRecord]):
    """A pandas DataFrame, one row per record, with the scaling parameters and headline figures."""
    import pandas as pd

    rows = []
    for r in records:
        row: dict[str, Any] = {"name": r.name, "kind": r.kind, "spec_id": r.spec_id,
                               "input_size": f"{r.input_size[0]}x{r.input_size[1]}"}
        if r.kind == "eseg":
            enc, dec = r.spec["encoder"], r.spec["decoder"]
            row.update({"width": enc["width"], "depth": enc["depth"], "block": enc["block"],
                        "fused_stages": enc["fused_stages"], "se": enc["se"], "act": enc["act"],
                        "backbone": enc["backbone"], "channels": dec["channels"], "repeats": dec["repeats"],
                        "min_level": dec["min_level"], "max_level": dec["max_level"]})
        else:
            row["source"] = r.source
        rows.append({
            **row, "params": r.params, "params_m": r.params_m, "macs": r.macs, "gmacs": r.gmacs,
            **{f"macs_{p}": v for p, v in r.macs_by_part.items()},
            "paper_params_m": r.paper_params_m, "paper_gmacs": r.paper_gmacs, "paper_source": r.paper_source,
            "params_dev_pct": r.params_dev_pct, "gmacs_dev_pct": r.gmacs_dev_pct, "counter": r.counter,
            "notes": "; ".join(r.notes) or None,
            **{k: v for k, v in r.extra.items() if not isinstance(v, (dict, list))},
        })
    return pd.DataFrame(rows)
