"""Short-schedule training and single-scale mIoU (paper section 4.1; minutes on a CPU, or torchrun).

>>> import escale, escale.train
>>> spec = escale.preset("ESeg-Lite-S").with_overrides({"encoder.width": 0.25, "decoder.max_level": 6})
>>> rec = escale.train.train(spec, dataset="synthetic", steps=20, input_size=(64, 128))
>>> rec.miou, rec.pixel_acc, rec.images_per_second

The package itself is callable, ``escale.train(spec, ...)`` being ``escale.train.train(spec, ...)``:
importing a subpackage rebinds the parent's attribute to it, so a separate top-level function named
``train`` would be shadowed as soon as anything imported ``escale.train``.
"""

import sys
import types

from escale.train.checkpoint import load_checkpoint, save_checkpoint
from escale.train.distributed import DistributedError
from escale.train.evaluate import evaluate
from escale.train.loop import TrainingDivergedError, resolve_device, train
from escale.train.loss import ohem_cross_entropy
from escale.train.metrics import ConfusionMatrix, confusion_matrix, iou_per_class, mean_iou, pixel_accuracy
from escale.train.protocol import PROTOCOLS, Protocol, protocol_for
from escale.train.record import TrainProgress, TrainRecord
from escale.train.trainer import Trainer, cosine_schedule

__all__ = [
    "PROTOCOLS", "ConfusionMatrix", "DistributedError", "Protocol", "TrainProgress", "TrainRecord", "Trainer",
    "TrainingDivergedError", "confusion_matrix", "cosine_schedule", "evaluate", "iou_per_class",
    "load_checkpoint", "mean_iou", "ohem_cross_entropy", "pixel_accuracy", "protocol_for", "resolve_device",
    "save_checkpoint", "train",
]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204 - forwards to train()
        """``escale.train(...)`` is :func:`escale.train.train`."""
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
