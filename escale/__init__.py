"""escale: generate, profile, search and report ESeg segmentation networks.

>>> import escale
>>> spec = escale.preset("ESeg-S")
>>> rec = escale.profile(spec)                              # params and MACs at 1024x2048
>>> rec.paper_source, round(rec.gmacs, 2)                   # compared with the paper: it is the paper's model
('Table 4', 33.95)
>>> escale.profile("timm:resnet50").input_size              # any timm model or nn.Module, too
(224, 224)
>>> model = escale.build_model(spec)                        # a torch.nn.Module
>>> rec = escale.train(spec, dataset="synthetic", steps=2, input_size=(64, 128), eval_images=2)
>>> rec.notes                                               # any input size runs; collapsed levels are named
['P7-P9 are 1x1 at 64x128 (levels below one pixel are clamped to 1)']
"""

from escale.errors import (
    BackendUnavailableError,
    CheckpointError,
    EscaleError,
    RegistryError,
    SpecError,
    SpecNote,
)
from escale.spec import DecoderSpec, EncoderSpec, ESegSpec, family, load_spec, preset

__version__ = "0.1.0"


def build_model(spec, device=None):  # noqa: ANN001, ANN201 - thin lazy wrapper, see escale.models
    """Build an ``nn.Module`` from a spec (imports torch lazily)."""
    from escale.models import build_model as _build

    return _build(spec, device=device)


def profile(target, input_size=None, counter="dispatch", **kwargs):  # noqa: ANN001, ANN003, ANN201
    """Params and MACs of a spec, preset, YAML path, ``timm:<model>`` or any nn.Module; see
    :func:`escale.profiler.profile`."""
    from escale.profiler import profile as _profile

    return _profile(target, input_size=input_size, counter=counter, **kwargs)


def records_to_frame(records):  # noqa: ANN001, ANN201
    """A pandas DataFrame for a list of profile records."""
    from escale.profiler import records_to_frame as _frame

    return _frame(records)


_LAZY_SUBPACKAGES = ("data", "models", "profiler", "report", "search", "train")


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 lazy subpackages (torch is imported on first use)
    """``escale.train(spec, ...)``, ``escale.search``, ``escale.report``, ... without importing them up front."""
    if name in _LAZY_SUBPACKAGES:
        import importlib

        return importlib.import_module(f"escale.{name}")
    raise AttributeError(f"module 'escale' has no attribute {name!r}")


__all__ = [
    "BackendUnavailableError", "CheckpointError", "DecoderSpec", "ESegSpec", "EncoderSpec", "EscaleError",
    "RegistryError", "SpecError", "SpecNote", "build_model", "family", "load_spec", "preset", "profile", "records_to_frame",
]
