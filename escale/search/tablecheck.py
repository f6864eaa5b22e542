"""Checks of latency-table files: every field with its type and range, one-line errors naming the file.

A truncated or hand-edited table (a negative or missing latency, a key that does not parse, a wrong
format tag, a calibration of an unknown mode) must fail on load with the file, the field and what was
expected -- never be priced from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from escale.errors import EscaleError

FORMAT = "escale-latency-table/1"


class TableError(EscaleError, ValueError):
    """A latency table (or a calibration of one) is missing, malformed, or made for other settings."""


# The shape attributes each kernel op needs (escale.search.kernels; the predictor's work() reads them).
KERNEL_ATTRS = {"conv": ("act", "bias", "cin", "cout", "d", "g", "h", "k", "p", "s", "w"), "act": ("act",),
                "pool": ("c", "h", "k", "kind", "p", "s", "w"), "resize": ("c", "h", "ho", "mode", "w", "wo"),
                "wsum": ("n",), "add": (), "mul": ("hb", "wb"), "scale": (), "mean": ()}
CALIBRATION_MODES = ("ratio", "linear", "classes")


def check_table_dict(data: Any, where: str) -> None:
    """Every field a table needs, with the type and range it must have; one-line :class:`TableError` naming
    ``where`` (the file), the field and what was expected."""
    def bad(name: str, value: Any, expected: str) -> TableError:
        return TableError(f"{where}: {name} is {_short(value)} (expected {expected})")

    if not isinstance(data, dict):
        raise bad("the top level", type(data).__name__, "a JSON object: a latency table")
    if data.get("format") != FORMAT:
        raise TableError(f"{where}: not a latency table: format is {_short(data.get('format'))} (expected {FORMAT!r})")
    for name in ("backend", "device", "precision"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise bad(name, data.get(name, "missing"), "a name, e.g. 'onnxruntime', 'cpu', 'fp32'")
    size = data.get("input_size")
    if not (isinstance(size, list) and len(size) == 2 and all(_whole(v) and v >= 1 for v in size)):
        raise bad("input_size", size if "input_size" in data else "missing", "[H, W], whole numbers >= 1")
    if not (_whole(data.get("threads")) and data["threads"] >= 1):
        raise bad("threads", data.get("threads", "missing"), "a whole number >= 1")
    if not _number(data.get("overhead_ms", 0.0), 0.0):
        raise bad("overhead_ms", data.get("overhead_ms"), "a number >= 0")
    kernels = data.get("kernels")
    if not isinstance(kernels, dict):
        raise bad("kernels", kernels if "kernels" in data else "missing", "an object: kernel key -> {latency_ms, ...}")
    for key, entry in kernels.items():
        _check_kernel(key, entry, bad)
    cal = data.get("calibration")
    if cal is not None:
        _check_calibration(cal, bad)
    for name in ("fingerprint", "env", "timing"):
        if data.get(name) is not None and not isinstance(data[name], dict):
            raise bad(name, data[name], "an object")
    if not isinstance(data.get("built_from", []), list):
        raise bad("built_from", data["built_from"], "a list of {name, spec_id[, spec]}")


def _check_kernel(key: Any, entry: Any, bad: Callable[..., TableError]) -> None:
    from escale.search.kernels import Kernel

    op = key.partition(":")[0] if isinstance(key, str) else None
    try:
        k = Kernel.from_key(key)
        ok = k.key == key and op in KERNEL_ATTRS and all(n in dict(k.attrs) for n in KERNEL_ATTRS[op])
    except (AttributeError, TypeError, ValueError):
        ok = False
    if not ok:
        raise bad("a kernel key", key, f"OP:name=value,... with OP one of {', '.join(KERNEL_ATTRS)} and its shape "
                                       "attributes, as `escale lut build` writes")
    if not isinstance(entry, dict) or "latency_ms" not in entry:
        raise bad(f"kernels[{key!r}].latency_ms", "missing", "a number of ms >= 0")
    for name in ("latency_ms", "raw_ms"):
        if name in entry and not _number(entry[name], 0.0):
            raise bad(f"kernels[{key!r}].{name}", entry[name], "a number of ms >= 0")


def _check_calibration(cal: Any, bad: Callable[..., TableError]) -> None:
    if not isinstance(cal, dict):
        raise bad("calibration", cal, "an object or null")
    if cal.get("mode") not in CALIBRATION_MODES:
        raise bad("calibration.mode", cal.get("mode", "missing"), f"one of {', '.join(CALIBRATION_MODES)}")
    if not _number(cal.get("slope"), 0.0):
        raise bad("calibration.slope", cal.get("slope", "missing"), "a number >= 0")
    if not _number(cal.get("intercept_ms", 0.0), -math.inf):
        raise bad("calibration.intercept_ms", cal.get("intercept_ms"), "a number")
    if cal["mode"] == "classes":
        slopes = cal.get("slopes")
        if not isinstance(slopes, dict) or not slopes or not all(_number(v, 0.0) for v in slopes.values()):
            raise bad("calibration.slopes", slopes if "slopes" in cal else "missing",
                      "an object: kernel class -> a number >= 0")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any, low: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= low


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
