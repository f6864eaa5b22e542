"""Inference-time folding before export and timing (paper section 3.1).

- Softmax level weights: ``model.fold_for_inference()`` (ESeg) freezes ``softmax(w)`` into constants.
- BatchNorm into the preceding convolution: ``W' = W * g / sqrt(v + eps)`` per output channel and
  ``b' = (b - m) * g / sqrt(v + eps) + beta``. Conv -> BN pairs are found by running the model once with
  forward hooks: a BN whose input *is* (the same tensor object as) a conv's output follows that conv.
  Folded BNs become ``nn.Identity`` (timm's ``BatchNormAct2d`` keeps its activation). With real weights the
  fold is checked against the unfolded model on the trace input (max abs difference reported).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from escale.errors import EscaleError


class FoldError(EscaleError, RuntimeError):
    """Folding changed the model's output beyond tolerance."""


class _ActOnly(nn.Module):
    """What is left of timm's ``BatchNormAct2d`` once its BN is folded away: drop -> act."""

    def __init__(self, drop: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.drop, self.act = drop, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


@dataclass
class FoldReport:
    """What was folded; ``max_abs_diff`` compares folded and unfolded outputs (None on meta)."""

    bn_folded: int = 0
    softmax_folded: bool = False
    bn_not_folded: list[str] = field(default_factory=list)
    max_abs_diff: float | None = None

    def to_dict(self) -> dict:
        return {"bn_folded": self.bn_folded, "softmax_folded": self.softmax_folded,
                "bn_not_folded": list(self.bn_not_folded), "fold_max_abs_diff": self.max_abs_diff}


def _is_plain_bn(bn: nn.Module) -> bool:
    return type(bn) is nn.BatchNorm2d or (isinstance(bn, nn.BatchNorm2d) and hasattr(bn, "act"))


def find_conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> tuple[list[tuple[str, str]], list[str]]:
    """(conv name, bn name) pairs where the BN directly consumes the conv's output; and unpaired BNs."""
    names = {id(m): n for n, m in model.named_modules()}
    conv_out: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: dict[str, str] = {}
    bn_seen: list[str] = []

    def on_conv(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        conv_out[id(output)] = (names[id(mod)], output)  # keep the tensor alive: ids stay unique

    def on_bn(mod: nn.Module, inputs: tuple) -> None:
        bn_seen.append(names[id(mod)])
        hit = conv_out.get(id(inputs[0]))
        if hit is not None and hit[1] is inputs[0]:
            pairs.setdefault(names[id(mod)], hit[0])

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(on_conv))
        elif isinstance(m, nn.BatchNorm2d):
            hooks.append(m.register_forward_pre_hook(on_bn))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    conv_users: dict[str, int] = {}
    for conv in pairs.values():
        conv_users[conv] = conv_users.get(conv, 0) + 1
    good = [(c, b) for b, c in pairs.items() if conv_users[c] == 1]  # a conv feeding two BNs stays
    unpaired = sorted(set(bn_seen) - {b for _, b in good})
    return good, unpaired


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold eval-mode ``bn`` into ``conv`` in place (the conv gains a bias if it had none)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1 / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.dim() - 1))))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = (bias - bn.running_mean) * scale + shift
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias)
    else:
        conv.bias.copy_(new_bias)


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> FoldReport:
    """Fold every Conv2d -> BatchNorm2d pair of an eval-mode ``model`` in place; see the module docstring."""
    model.eval()
    pairs, unpaired = find_conv_bn_pairs(model, example)
    report = FoldReport(bn_not_folded=unpaired)
    for conv_name, bn_name in pairs:
        bn = model.get_submodule(bn_name)
        if not _is_plain_bn(bn) or not bn.track_running_stats:
            report.bn_not_folded.append(bn_name)
            continue
        fold_conv_bn(model.get_submodule(conv_name), bn)
        _set_module(model, bn_name, _ActOnly(bn.drop, bn.act) if hasattr(bn, "act") else nn.Identity())
        report.bn_folded += 1
    report.bn_not_folded.sort()
    return report


def prepare_for_inference(model: nn.Module, example: torch.Tensor, check: bool = True,
                          atol: float = 1e-4) -> FoldReport:
    """eval(), softmax-weight fold (if the model has one), BN fold; checks the output unless on meta.

    Raises :class:`FoldError` if the folded output differs from the unfolded one by more than ``atol``.
    """
    model.eval()
    on_meta = example.device.type == "meta"
    reference = copy.deepcopy(model) if check and not on_meta else None
    softmax = hasattr(model, "fold_for_inference")
    if softmax:
        model.fold_for_inference()
    report = fold_batchnorm(model, example)
    report.softmax_folded = softmax
    if reference is not None:
        with torch.no_grad():
            diff = (model(example) - reference(example)).abs().max().item()
        report.max_abs_diff = float(diff)
        if not diff <= atol:
            raise FoldError(f"fold: folded model differs from the original by {diff:.3g} (allowed <= {atol:g})")
    return report


def build_folded(spec: object, check: bool = True) -> tuple[nn.Module, FoldReport]:
    """The ESeg model of ``spec`` (weights from seed 0), folded for inference, and what was folded.

    The conv -> BN trace runs at the smallest valid input, 2**max_level square.
    """
    from escale.models import build_model

    torch.manual_seed(0)
    model = build_model(spec).eval()
    side = 2 ** spec.decoder.max_level
    return model, prepare_for_inference(model, torch.randn(1, 3, side, side), check=check)
