"""What ``escale benchmark`` measures, as data, and the plan for one machine (no torch import here).

A *path* is one way of running a model (backend, precision, options); a *part* is the unit of work that
runs in its own child process with its own time box: the environment, one model's eager torch paths,
one model's torch.compile path, one model's ONNX Runtime path, one model's TensorRT path, training.
The plan says, per check, whether it would run here and, if not, why (from the environment probe).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from escale.errors import SpecError
from escale.spec import FAMILIES, family, parse_input_size, preset

BACKEND_NAMES = ("torch", "onnxruntime", "tensorrt")
DEFAULT_INPUT_SIZE = (1024, 2048)  # the paper's Table 6 resolution; batch 1
DEFAULT_TRAIN_SIZE = (512, 1024)  # paper section 4.1's Cityscapes crop
TRAIN_MODEL = "ESeg-S"
DEFAULT_TIME_LIMIT_S = 450.0  # the whole run, so that it ends within 8 minutes with start-up and writing
MIN_PART_S = 10.0  # a part is not started with less time than this left
PART_MIN_S = {"compile": 60.0, "tensorrt": 60.0}  # ... or than a cold compile / engine build takes (at most its box)


@dataclass(frozen=True)
class BenchPath:
    """One way of running a model: a latency backend at a precision with options, in a part of its kind."""

    name: str
    backend: str
    precision: str
    options: dict[str, Any]
    kind: str  # the part it runs in: eager, compile, onnxruntime, tensorrt
    label: str


_FP16 = {"cast_model": True}
_FP16_CL = {"cast_model": True, "channels_last": True}
CUDA_PATHS = (
    BenchPath("torch-fp32", "torch", "fp32", {}, "eager", "torch eager fp32 (TF32 off)"),
    BenchPath("torch-fp16-autocast", "torch", "fp16", {}, "eager", "torch eager, fp16 autocast"),
    BenchPath("torch-fp16", "torch", "fp16", _FP16, "eager", "torch eager, model cast to fp16"),
    BenchPath("torch-fp16-channels-last", "torch", "fp16", _FP16_CL, "eager", "torch eager fp16, channels_last"),
    BenchPath("torch-fp16-cuda-graphs", "torch", "fp16", {**_FP16_CL, "cuda_graphs": True}, "eager",
              "torch fp16 channels_last, CUDA graph replay"),
    BenchPath("torch-fp16-compile", "torch", "fp16", {**_FP16_CL, "compile": True, "cuda_graphs": True}, "compile",
              "torch.compile (mode reduce-overhead: CUDA graphs) fp16 channels_last"),
    BenchPath("onnxruntime-fp32", "onnxruntime", "fp32", {"check_numerics": False}, "onnxruntime",
              "ONNX Runtime, CUDA execution provider, fp32"),
    BenchPath("tensorrt-fp16", "tensorrt", "fp16", {"check_numerics": False}, "tensorrt", "TensorRT fp16 engine"),
)
CPU_PATHS = (  # --device cpu: the same machinery on a machine without a GPU (tests, smoke runs)
    BenchPath("torch-fp32", "torch", "fp32", {}, "eager", "torch eager fp32"),
    BenchPath("torch-fp32-channels-last", "torch", "fp32", {"channels_last": True}, "eager",
              "torch eager fp32, channels_last"),
    BenchPath("torch-fp32-compile", "torch", "fp32", {"compile": True}, "compile", "torch.compile fp32"),
    BenchPath("onnxruntime-fp32", "onnxruntime", "fp32", {"check_numerics": False}, "onnxruntime",
              "ONNX Runtime, CPU execution provider, fp32"),
    BenchPath("tensorrt-fp16", "tensorrt", "fp16", {"check_numerics": False}, "tensorrt", "TensorRT fp16 engine"),
)
PART_KINDS = ("env", "eager", "train", "onnxruntime", "tensorrt", "compile")  # the order parts run in
PART_CAP_S = {"env": 60.0, "eager": 120.0, "train": 120.0, "onnxruntime": 120.0, "tensorrt": 240.0,
              "compile": 180.0}  # each part's time box (seconds), cut to what is left of --time-limit


def paths_for(device: str) -> tuple[BenchPath, ...]:
    return CUDA_PATHS if device == "cuda" else CPU_PATHS


@dataclass(frozen=True)
class BenchSettings:
    """Everything a run is asked to do; :func:`make_settings` checks it and names the bad field."""

    models: tuple[str, ...]
    device: str = "cuda"
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    backends: tuple[str, ...] = BACKEND_NAMES
    paths: tuple[str, ...] = ()  # empty: every path of the device
    family: str | None = "eseg"
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    part_timeout_s: float | None = None  # None: PART_CAP_S per kind
    train: bool = True
    train_size: tuple[int, int] = DEFAULT_TRAIN_SIZE
    train_batch: int = 8
    train_steps: int = 20
    train_warmup_steps: int = 5

    def to_dict(self) -> dict[str, Any]:
        return {"models": list(self.models), "device": self.device, "input_size": list(self.input_size),
                "batch": 1, "backends": list(self.backends), "paths": list(self.paths), "family": self.family,
                "time_limit_s": self.time_limit_s, "part_timeout_s": self.part_timeout_s, "train": self.train,
                "train_model": TRAIN_MODEL, "train_size": list(self.train_size), "train_batch": self.train_batch,
                "train_steps": self.train_steps, "train_warmup_steps": self.train_warmup_steps}

    def part_timeout(self, kind: str) -> float:
        return self.part_timeout_s if self.part_timeout_s is not None else PART_CAP_S[kind]

    def part_minimum(self, kind: str) -> float:
        """Seconds that must be left of ``--time-limit`` to start a part of ``kind``."""
        return max(MIN_PART_S, min(PART_MIN_S.get(kind, 0.0), self.part_timeout(kind)))


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def make_settings(family_name: str | None = "eseg", models: str | None = None, device: str = "cuda",
                  input_size: str | None = None, backends: str | None = None, paths: str | None = None,
                  time_limit_s: float = DEFAULT_TIME_LIMIT_S, part_timeout_s: float | None = None,
                  train: bool = True, train_size: str | None = None, train_batch: int = 8,
                  train_steps: int = 20, train_warmup_steps: int = 5) -> BenchSettings:
    """Checked settings from command-line text; a bad value raises one :class:`SpecError` naming the
    option, the value and what is allowed."""
    if family_name is not None and family_name not in FAMILIES:
        raise SpecError(f"--family: {family_name!r} is unknown (allowed: {', '.join(FAMILIES)})")
    if device not in ("cpu", "cuda"):
        raise SpecError(f"--device: {device!r} is not allowed (allowed: cpu, cuda)")
    names = _split(models)
    if names:
        known = {n.lower(): n for n in FAMILIES["eseg"]}
        bad = [n for n in names if n.lower() not in known]
        if bad:
            raise SpecError(f"--models: {bad[0]!r} is unknown (allowed: {', '.join(FAMILIES['eseg'])})")
        resolved = tuple(known[n.lower()] for n in names)
    else:
        resolved = tuple(s.name for s in family(family_name or "eseg"))
    chosen = tuple(_split(backends)) or BACKEND_NAMES
    bad = [b for b in chosen if b not in BACKEND_NAMES]
    if bad:
        raise SpecError(f"--backends: {bad[0]!r} is unknown (allowed: {', '.join(BACKEND_NAMES)})")
    wanted = tuple(_split(paths))
    allowed = [p.name for p in paths_for(device)]
    bad = [p for p in wanted if p not in allowed]
    if bad:
        raise SpecError(f"--paths: {bad[0]!r} is unknown on {device} (allowed: {', '.join(allowed)})")
    size = parse_input_size(input_size) if input_size else DEFAULT_INPUT_SIZE
    try:
        tsize = parse_input_size(train_size) if train_size else DEFAULT_TRAIN_SIZE
    except SpecError:
        raise SpecError(f"--train-size: {train_size!r} is not HxW with positive integers (e.g. 512x1024)") from None
    for name in resolved:
        preset(name).check_input_size(size)
    for opt, value, low in (("--time-limit", time_limit_s, MIN_PART_S), ("--part-timeout", part_timeout_s, 1.0)):
        if value is not None and not (isinstance(value, (int, float)) and value >= low):
            raise SpecError(f"{opt}: {value!r} is not allowed (allowed: seconds >= {low:g})")
    for opt, value, low in (("--train-batch", train_batch, 1), ("--train-steps", train_steps, 1),
                            ("--train-warmup", train_warmup_steps, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise SpecError(f"{opt}: {value!r} is not allowed (allowed: a whole number >= {low})")
    top = 2 ** preset(TRAIN_MODEL).decoder.max_level  # BatchNorm needs 2 values per channel at the top level
    if train and train_batch * -(-tsize[0] // top) * -(-tsize[1] // top) < 2:
        raise SpecError(f"--train-batch: {train_batch} cannot train BatchNorm at {tsize[0]}x{tsize[1]} "
                        "(allowed: >= 2 at this size)")
    return BenchSettings(models=resolved, device=device, input_size=size, backends=chosen, paths=wanted,
                         family=None if names else (family_name or "eseg"), time_limit_s=float(time_limit_s),
                         part_timeout_s=None if part_timeout_s is None else float(part_timeout_s), train=train,
                         train_size=tsize, train_batch=train_batch, train_steps=train_steps,
                         train_warmup_steps=train_warmup_steps)


@dataclass
class Part:
    """One child process's work: its kind, model (None for env/train) and the paths it runs, in order."""

    name: str
    kind: str
    model: str | None = None
    paths: list[BenchPath] = field(default_factory=list)


def path_skip_reason(path: BenchPath, settings: BenchSettings, probe: dict[str, Any]) -> str | None:
    """Why ``path`` will not run here (None: it will). ``probe`` comes from the environment part."""
    if settings.paths and path.name not in settings.paths:
        return f"not asked (--paths {','.join(settings.paths)})"
    if path.backend not in settings.backends:
        return f"not asked (--backends {','.join(settings.backends)})"
    if path.backend == "tensorrt" and settings.device != "cuda":
        return "TensorRT runs on CUDA only (--device cpu)"
    reasons = [probe.get("cuda") if settings.device == "cuda" else None, probe.get("models"),
               probe.get("backends", {}).get(path.backend),
               probe.get("compile") if path.kind == "compile" else None]
    reasons = list(dict.fromkeys(r for r in reasons if r))  # every reason, once: each must be fixed for it to run
    return "; ".join(reasons) or None


def train_skip_reason(settings: BenchSettings, probe: dict[str, Any]) -> str | None:
    if not settings.train:
        return "not asked (--no-train)"
    if settings.device == "cuda" and probe.get("cuda"):
        return probe["cuda"]
    return probe.get("models")


def build_plan(settings: BenchSettings, probe: dict[str, Any]) -> tuple[list[Part], list[dict[str, Any]]]:
    """The parts to run (env first, then by :data:`PART_KINDS`) and one row per check with its status:
    ``would run`` or ``skipped`` with the reason."""
    rows: list[dict[str, Any]] = [{"check": "environment", "part": "env", "status": "would run",
                                   "reason": "GPU, driver, clocks, library versions"}]
    by_kind: dict[str, list[Part]] = {k: [] for k in PART_KINDS}
    by_kind["env"].append(Part("env", "env"))
    tol = probe.get("numerics_tolerance") or {}
    tolerances = "max |diff| / max |ref| <= " + ", ".join(f"{v:g} {k}" for k, v in tol.items()) if tol else \
        "tolerance per precision"
    for model in settings.models:
        parts: dict[str, Part] = {}
        for path in paths_for(settings.device):
            why = path_skip_reason(path, settings, probe)
            part = f"{path.kind}:{model}"
            rows.append({"check": f"{model} {path.name}", "part": part, "model": model, "path": path.name,
                         "status": "skipped" if why else "would run", "reason": why or path.label})
            if why is None:
                parts.setdefault(path.kind, Part(part, path.kind, model)).paths.append(path)
        rows.append({"check": f"{model} numerics", "part": "(every path)", "model": model,
                     "status": "would run" if parts else "skipped",
                     "reason": f"each path's logits against CPU eager fp32 ({tolerances})" if parts
                     else "no path of this model runs here"})
        for kind, part in parts.items():
            by_kind[kind].append(part)
    why = train_skip_reason(settings, probe)
    h, w = settings.train_size
    rows.append({"check": f"training {TRAIN_MODEL}", "part": "train", "status": "skipped" if why else "would run",
                 "reason": why or f"{settings.train_steps} {'AMP ' if settings.device == 'cuda' else ''}steps at "
                                  f"{h}x{w}, batch {settings.train_batch}"})
    if why is None:
        by_kind["train"].append(Part("train", "train", TRAIN_MODEL))
    return [p for k in PART_KINDS for p in by_kind[k]], rows
