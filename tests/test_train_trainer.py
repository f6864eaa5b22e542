"""The update step: timm's EMA that skips steps the AMP GradScaler skipped, EfficientDet initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from timm.utils import ModelEmaV3

import escale
from escale.data import TrainTransform, make_dataset, normalize, train_batch
from escale.errors import SpecError
from escale.train.init import init_decoder
from escale.train.trainer import Trainer


@pytest.fixture()
def batch():
    ds = make_dataset("synthetic", size=(64, 128))
    images, labels = train_batch(ds, 2, seed=0, step=0, transform=TrainTransform((64, 128), (1.0, 1.0)))
    return normalize(images), labels


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_ema_does_not_advance_on_a_step_the_grad_scaler_skipped(tiny_spec, batch):
    torch.manual_seed(0)
    model = escale.build_model(tiny_spec.with_overrides({"num_classes": 8}))
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)  # a real scaler: it skips on inf gradients
    trainer = Trainer(model, 5e-5, torch.device("cpu"), ohem=False, ema_decay=0.99, scaler=scaler)
    assert isinstance(trainer.ema, ModelEmaV3)
    trainer.step(*batch, lr=0.05)
    assert trainer.updates == 1 and _same(_params(trainer.ema.module), _params(model))  # first update copies
    ema_before, model_before = _params(trainer.ema.module), _params(model)
    hook = model.head.predict[1].weight.register_hook(lambda g: g * math.inf)  # AMP overflow
    loss = trainer.step(*batch, lr=0.05)
    hook.remove()
    assert math.isfinite(loss) and trainer.skipped_steps == 1 and trainer.updates == 1 and scaler.get_scale() == 512
    assert _same(_params(model), model_before) and _same(_params(trainer.ema.module), ema_before)
    trainer.step(*batch, lr=0.05)
    assert trainer.updates == 2 and trainer.skipped_steps == 1
    assert not _same(_params(trainer.ema.module), ema_before) and not _same(_params(model), model_before)
    # timm's decay warm-up: the second update mixes in 1 - decay(2) = 2^-3/4 of the model
    d = trainer.ema.get_decay(2)
    assert d == pytest.approx(1 - 2 ** -0.75)
    first = ema_before[0]
    assert torch.allclose(_params(trainer.ema.module)[0], first * d + _params(model)[0] * (1 - d), atol=1e-6)


class GrowingScaler:
    """A fake GradScaler whose scale grows after a step (growth interval reached): not a skipped step."""

    def __init__(self) -> None:
        self.scale_value, self.steps = 2.0, 0

    def is_enabled(self) -> bool:
        return True

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def get_scale(self) -> float:
        return self.scale_value

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()
        self.steps += 1

    def update(self) -> None:
        self.scale_value *= 2.0


def test_a_growing_scale_is_not_taken_for_a_skipped_step(tiny_spec, batch):
    model = escale.build_model(tiny_spec.with_overrides({"num_classes": 8}))
    trainer = Trainer(model, 0.0, torch.device("cpu"), ohem=False, ema_decay=0.9, scaler=GrowingScaler())
    for _ in range(2):
        trainer.step(*batch, lr=0.01)
    assert trainer.updates == 2 and trainer.skipped_steps == 0 and trainer.scaler.steps == 2


def test_efficientdet_initialisation_touches_decoder_and_head_only(tiny_spec):
    torch.manual_seed(0)
    model = escale.build_model(tiny_spec)
    encoder = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    init_decoder(model, "efficientdet")
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in encoder.items())
    bns = [m for part in (model.decoder, model.head) for m in part.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.01 and m.eps == 1e-3 for m in bns)
    assert all(m.momentum == 0.1 for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    pw = model.head.predict[1].weight  # 1x1, fan_in = channels: variance scaling, std sqrt(1/16)
    assert pw.std().item() == pytest.approx(0.25, rel=0.35) and model.head.predict[1].bias.abs().sum() == 0
    dw = model.decoder.layers[0].top_down["P5"].conv[0].weight  # depthwise 3x3: glorot over fans 9 / 9
    assert dw.abs().max().item() <= math.sqrt(3 / 9) + 1e-6 and dw.abs().max().item() > 0.8 * math.sqrt(3 / 9)
    assert init_decoder(model, "default") is model
    with pytest.raises(SpecError, match="init: 'xavier' is unknown"):
        init_decoder(model, "xavier")
