"""Search: spaces (YAML -> Optuna distributions), studies under a latency budget, a latency predictor.

>>> from escale.search import load_space, StudyConfig, run_study, pareto_frame
>>> space = load_space("spaces/eseg-lite.yaml")
>>> study = run_study(StudyConfig(space, input_size=(512, 1024), cost="macs"), n_trials=20)  # front mode
>>> pareto_frame(study)                       # pandas DataFrame of the feasible Pareto front
>>> table = build_table([space.base], (512, 1024))   # kernel latency table (ONNX Runtime, CPU)
>>> LatencyPredictor(table).predict(space.base).latency_ms

The kernel/table/predictor names import torch on first use only, so studies that do not need them
(and ``escale study show``) start quickly.
"""

from importlib import import_module
from typing import Any

from escale.search.objectives import ACCURACY_OBJECTIVES, COST_AXES, TrainSettings
from escale.search.proxy import proxy_miou, trend_miou
from escale.search.results import best_trials, fastest_seen, nearest_preset, pareto_frame, trials_frame
from escale.search.space import SearchSpace, SpaceError, load_space, space_from_dict
from escale.search.study import Outcome, StudyConfig, evaluate_candidate, load_study, open_study, run_study

_LAZY = {
    "Kernel": "kernels", "model_kernels": "kernels", "LatencyTable": "lut", "build_table": "lut",
    "load_table": "lut", "LatencyPredictor": "predictor", "Prediction": "predictor",
    "load_predictor": "proposals", "propose": "proposals",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"escale.search.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'escale.search' has no attribute {name!r}")


__all__ = [
    "ACCURACY_OBJECTIVES", "COST_AXES", "best_trials", "Kernel", "LatencyPredictor", "LatencyTable", "Outcome", "Prediction",
    "SearchSpace", "SpaceError", "StudyConfig", "TrainSettings", "build_table", "evaluate_candidate",
    "fastest_seen", "load_predictor", "load_space", "load_study", "load_table", "model_kernels",
    "nearest_preset", "open_study", "pareto_frame", "propose", "proxy_miou", "run_study", "space_from_dict",
    "trend_miou", "trials_frame",
]
