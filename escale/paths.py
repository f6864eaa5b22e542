"""Default file locations, in one place. None depends on the current directory.

**Home** (:func:`home`): where escale writes what it makes for you, in order of precedence

1. ``$ESCALE_HOME`` (a relative value is taken from the current directory, as any path you type);
2. the checkout's ``reports/`` folder when escale runs from its source checkout (found from this
   file's location: the folder above the package holds ``pyproject.toml`` and ``reports/``);
3. ``$XDG_DATA_HOME/escale``, else ``~/.local/share/escale``.

Under it::

    studies/NAME.db          Optuna SQLite storage (escale propose, study, plot study, report --study)
    proposals/STUDY/         spec YAMLs written by escale propose
    lut-local/               latency tables built by escale lut build (looked up before the reference ones)
    lut-calibrations/        per-machine calibrations of tables (escale lut calibrate; TABLE-STEM@FINGERPRINT.json)
    plots/                   figures from escale plot
    study-reports/NAME/      escale report --study NAME
    bench/NAME/              benchmarks/bench_NAME.py runs

**Reference results** (:func:`reference_dir`): the checkout's ``reports/`` -- ``lut/*.json``,
``eseg-family/``, ``latency/``, ``profile/``, ``predictor/``, ``context/``. They are read from there
and written only when asked explicitly (``--out PATH``, a benchmark's ``--update-reference``,
``escale report`` whose purpose is to regenerate ``eseg-family/``). Outside a checkout there are none.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ENV_HOME = "ESCALE_HOME"
PACKAGE_DIR = Path(__file__).resolve().parent


def checkout() -> Path | None:
    """The source checkout escale runs from (its ``pyproject.toml`` and ``reports/`` beside the package), or None."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "reports").is_dir() else None


def reference_dir() -> Path | None:
    """The checkout's ``reports/`` (committed reference results), or None outside a checkout."""
    root = checkout()
    return root / "reports" if root is not None else None


def home() -> Path:
    """Where escale writes by default: ``$ESCALE_HOME``, the checkout's ``reports/``, or the user data folder."""
    env = os.environ.get(ENV_HOME, "").strip()
    if env:
        return Path(env).expanduser().absolute()
    ref = reference_dir()
    if ref is not None:
        return ref
    data = os.environ.get("XDG_DATA_HOME", "").strip()
    return (Path(data).expanduser() if data else Path.home() / ".local" / "share") / "escale"


def studies_dir() -> Path:
    return home() / "studies"


def proposals_dir() -> Path:
    return home() / "proposals"


def lut_dir() -> Path:
    """Where ``escale lut build`` writes tables (never the committed ``reports/lut/``)."""
    return home() / "lut-local"


def lut_calibrations_dir() -> Path:
    """Where ``escale lut calibrate`` (and ``escale propose``) write per-machine calibrations of tables
    (never into a table)."""
    return home() / "lut-calibrations"


def fingerprint_cache_dir() -> Path:
    """The cached performance fingerprints: ``$ESCALE_CACHE_DIR/fingerprint`` (default ``~/.cache/escale/``)."""
    return Path(os.environ.get("ESCALE_CACHE_DIR") or Path.home() / ".cache" / "escale") / "fingerprint"


def reference_lut_dir() -> Path | None:
    ref = reference_dir()
    return ref / "lut" if ref is not None else None


def lut_search_path() -> list[Path]:
    """Folders searched, in order, for a latency table matching the settings: your tables, then the reference."""
    ref = reference_lut_dir()
    return [lut_dir()] + ([ref] if ref is not None else [])


def plots_dir() -> Path:
    return home() / "plots"


def study_report_dir(name: str) -> Path:
    return home() / "study-reports" / name


def family_report_dir() -> Path:
    """``escale report``'s default: the reference ``reports/eseg-family/`` (its documented purpose), else under home."""
    ref = reference_dir()
    return (ref if ref is not None else home()) / "eseg-family"


def bench_dir(name: str, update_reference: bool = False) -> Path:
    """A benchmark's output folder: ``home()/bench/NAME``, or the reference ``reports/NAME`` when asked."""
    if update_reference:
        ref = reference_dir()
        if ref is None:
            from escale.errors import EscaleError

            raise EscaleError("--update-reference: escale is not running from its source checkout "
                              "(no reports/ folder beside the package)")
        return ref / name
    return home() / "bench" / name


def add_bench_output_arguments(parser: Any, name: str) -> None:
    """A benchmark's ``--out DIR`` / ``--update-reference`` (mutually exclusive) on an argparse parser."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--out", help=f"output folder (default: <home>/bench/{name}, ignored by git)")
    g.add_argument("--update-reference", action="store_true", help=f"write the committed reports/{name}/")


def bench_output(args: Any, name: str) -> Path:
    """The folder a benchmark writes to, from the arguments of :func:`add_bench_output_arguments`."""
    return Path(args.out) if args.out else bench_dir(name, args.update_reference)


def locations() -> dict[str, str | None]:
    """Every default location, resolved now (``escale paths`` prints it)."""
    ref = reference_dir()
    return {"home": str(home()), "home_from": _home_source(), "reference": str(ref) if ref else None,
            "studies": str(studies_dir()), "proposals": str(proposals_dir()), "lut_build": str(lut_dir()),
            "lut_search": os.pathsep.join(map(str, lut_search_path())),
            "lut_calibrations": str(lut_calibrations_dir()), "fingerprint_cache": str(fingerprint_cache_dir()),
            "plots": str(plots_dir()),
            "study_reports": str(home() / "study-reports"), "family_report": str(family_report_dir()),
            "bench": str(home() / "bench")}


def _home_source() -> str:
    if os.environ.get(ENV_HOME, "").strip():
        return f"${ENV_HOME}"
    if reference_dir() is not None:
        return "source checkout"
    return "$XDG_DATA_HOME" if os.environ.get("XDG_DATA_HOME", "").strip() else "~/.local/share"
