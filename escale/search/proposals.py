"""Proposals: run (or resume) a study, then take the best feasible candidates and write their specs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from escale import paths
from escale.errors import EscaleError
from escale.search.calibration import (
    BUDGET_S,
    MachineCalibration,
    calibrate_table,
    calibration_path,
    machine_status,
)
from escale.search.lut import find_table, load_table
from escale.search.predictor import LatencyPredictor
from escale.search.results import fastest_seen, pareto_frame
from escale.search.study import StudyConfig, run_study
from escale.spec import ESegSpec


def load_predictor(path: str | Path | None, backend: str, device: str, precision: str,
                   input_size: tuple[int, int], threads: int | None, calibration: str | Path | None = None,
                   machine: bool = True) -> LatencyPredictor | None:
    """The predictor for these settings: ``path``, else the first table named for them in
    :func:`escale.paths.lut_search_path` (your built tables, then the committed ``reports/lut/``), else None.

    A table made for other settings (backend, device, precision, input size, threads) is an error. With
    ``machine`` the predictor's ``status`` (:class:`~escale.search.calibration.MachineStatus`) says whether the
    table was built here, and this machine's matching calibration (``calibration``, else the one in
    ``<home>/lut-calibrations/``) is applied; a foreign table without one is returned as is (``status.foreign``):
    see :func:`calibrate_here`.
    """
    if path is None:
        path = find_table(backend, device, precision, input_size, threads or 1)
        if path is None:
            return None
    table = load_table(path)
    want = {"backend": backend, "device": device, "precision": precision, "input_size": list(input_size),
            "threads": threads or 1}
    if table.settings() != want:
        diff = next(k for k in want if table.settings()[k] != want[k])
        raise EscaleError(f"--lut: {path} was built for {diff}={table.settings()[diff]!r}, not {want[diff]!r} "
                          "(build a matching one with `escale lut build`)")
    if not machine:
        return LatencyPredictor(table)
    status = machine_status(table, calibration)
    pred = LatencyPredictor(table, machine=status.calibration)
    pred.status = status
    return pred


def calibrate_here(predictor: LatencyPredictor, budget_s: float = BUDGET_S,
                   on_step: Callable[[str], None] | None = None) -> MachineCalibration:
    """Calibrate the predictor's table for this machine (:func:`~escale.search.calibration.calibrate_table`),
    save it where :func:`load_predictor` looks, and price with it from now on."""
    status = predictor.status or machine_status(predictor.table)
    cal = calibrate_table(predictor.table, budget_s=budget_s, fingerprint=status.fingerprint, on_step=on_step)
    cal.save(calibration_path(predictor.table, status.fingerprint))
    predictor.machine = status.calibration = cal
    predictor.status = status
    return cal


def propose(cfg: StudyConfig, n_trials: int, top: int = 5, out_dir: str | Path | None = None,
            on_trial: Callable[..., None] | None = None, on_start: Callable[..., None] | None = None) -> Any:
    """Run/resume the study to ``n_trials`` complete trials; return the best ``top`` feasible proposals
    (a DataFrame, best mIoU first, with ``spec_file``) and write each spec as YAML under ``out_dir``
    (default: ``<proposals_dir>/<study>``, :func:`escale.paths.proposals_dir`). ``on_start``/``on_trial``:
    see :func:`escale.search.study.run_study`."""
    study = run_study(cfg, n_trials, on_trial=on_trial, on_start=on_start)
    front = pareto_frame(study)
    if front.empty:
        fastest = fastest_seen(study)
        seen = f"; fastest latency seen {fastest:.2f} ms" if fastest is not None else ""
        raise EscaleError(f"propose: no candidate of study {cfg.name!r} fits --budget-ms {cfg.budget_ms}{seen}")
    front = front.head(top).copy()
    out = Path(out_dir) if out_dir is not None else paths.proposals_dir() / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    files, notes = [], []
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for rank, row in enumerate(front.itertuples(), start=1):
        t = by_number[row.trial]
        spec = ESegSpec.from_dict({**t.user_attrs["spec"], "name": f"{cfg.name}-{rank}"})
        notes.append(spec.input_size_note(tuple(cfg.input_size)))  # e.g. "P8-P9 are 1x1 at 128x256 (...)"
        path = out / f"{rank:02d}-{spec.spec_id}.yaml"
        path.write_text(_header(cfg, t.user_attrs, rank, notes[-1]) + spec.to_yaml())
        files.append(str(path))
    front["spec_file"] = files
    front["input_size_note"] = notes
    front["study"] = cfg.name
    return front


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _header(cfg: StudyConfig, ua: dict[str, Any], rank: int, note: str | None) -> str:
    h, w = cfg.input_size
    lines = [f"# escale proposal {rank} of study {cfg.name} (spec_id {ua.get('spec_id')})",
             f"# {cfg.backend}/{cfg.device}/{cfg.precision}, input {h}x{w}, budget {cfg.budget_ms} ms",
             f"# mIoU {ua.get('miou')} ({ua.get('accuracy_objective')}), predicted latency "
             f"{_ms(ua.get('predicted_latency_ms'))}, measured latency {_ms(ua.get('latency_ms'))}, "
             f"MACs {ua.get('macs')}, params {ua.get('params')}"] + ([f"# {note}"] if note else [])
    return "\n".join(lines) + "\n"
