"""The paper's published points (Tables 4, 5 and 6) as a data file shipped with the package.

``paper_points.csv`` holds one row per published (model, protocol) point, citing its table:

- Table 4 (Cityscapes val): ``miou`` (single-scale unless ``multi_scale``), ``miou_extra_data``
  (with pretraining/self-training), ``params_m`` (millions) and ``gmacs`` (billions of multiply-adds at
  1024x2048; the paper calls them FLOPs). Cells printed as '-' are empty.
- Table 5 (ADE20K val): ``miou`` and ``pixacc`` (%); ``multi_scale`` is the table's dagger. Cells printed
  as "44.3/45.3†" become two rows (single- and multi-scale).
- Table 6 (Cityscapes real-time): ``miou``, ``input_size`` (HxW), ``fps`` (frames per second, batch 1) and
  ``same_v100`` (the table's dagger: measured by the authors on their V100 with TensorRT). FasterSeg's
  "170† / 164" is two rows.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from escale.errors import EscaleError

TABLES = ("Table 4", "Table 5", "Table 6")
BOOL_COLUMNS = ("multi_scale", "same_v100")
FLOAT_COLUMNS = ("miou", "miou_extra_data", "params_m", "gmacs", "fps", "pixacc")


@lru_cache(maxsize=1)
def _load():
    import pandas as pd

    with resources.files("escale.report").joinpath("paper_points.csv").open("r", encoding="utf-8") as fh:
        frame = pd.read_csv(fh, dtype=str, keep_default_na=False)
    for col in FLOAT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col].replace("", None), errors="raise").astype(float)
    for col in BOOL_COLUMNS:
        frame[col] = frame[col].map({"True": True, "False": False, "": None}).astype("boolean")
    return frame


def paper_points(table: str | int | None = None):
    """The paper's published points as a DataFrame (a copy); ``table`` is e.g. ``"Table 4"`` or ``4``."""
    frame = _load()
    if table is None:
        return frame.copy()
    key = f"Table {table}" if isinstance(table, int) or str(table).isdigit() else str(table)
    if key not in TABLES:
        raise EscaleError(f"table: {table!r} is unknown (allowed: {', '.join(TABLES)})")
    return frame[frame["table"] == key].reset_index(drop=True)


def paper_miou(name: str) -> tuple[float, str] | None:
    """Cityscapes val mIoU (%) the paper gives for a preset, with its source, or None.

    ESeg-S/M/L: Table 4 (single-scale, no extra data); ESeg-Lite-*: Table 6 at 1024x2048.
    """
    frame = _load()
    t4 = frame[(frame["table"] == "Table 4") & (frame["model"] == name)]
    if len(t4):
        return float(t4["miou"].iloc[0]), "Table 4"
    t6 = frame[(frame["table"] == "Table 6") & (frame["model"] == name) & (frame["input_size"] == "1024x2048")]
    if len(t6):
        return float(t6["miou"].iloc[0]), "Table 6"
    return None
