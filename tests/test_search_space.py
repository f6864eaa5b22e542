"""Search spaces: shipped YAML files, validation before any trial, specs from parameters, the proxy."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from search_common import TINY

import escale
from escale.errors import SpecError
from escale.search import SpaceError, load_space, space_from_dict
from escale.search.proxy import FITS, level_penalty, proxy_miou

ROOT = Path(__file__).resolve().parents[1]



def with_param(key: str, entry: object) -> dict:
    return {**TINY, "params": {**TINY["params"], key: entry}}


def test_shipped_spaces_hold_their_paper_presets() -> None:
    lite = load_space(ROOT / "spaces" / "eseg-lite.yaml")
    full = load_space(ROOT / "spaces" / "eseg.yaml")
    assert list(lite.presets_inside()) == ["ESeg-Lite-S", "ESeg-Lite-M", "ESeg-Lite-L"]
    assert list(full.presets_inside()) == ["ESeg-S", "ESeg-M", "ESeg-L"]
    assert list(lite.presets_inside((256, 512))) == list(lite.presets_inside())  # P9 is 1x1 there, and runs
    assert lite.base.encoder.act == "relu" and lite.base.decoder.min_level == 3 and not lite.base.encoder.se
    assert full.base.encoder.block == "mbconv" and full.base.decoder.min_level == 2
    for space in (lite, full):
        assert {"encoder.width", "encoder.depth", "decoder.channels", "decoder.repeats", "decoder.min_level",
                "decoder.max_level"} <= set(space.distributions)
    assert "encoder.block" in full.distributions and "encoder.fused_stages" in lite.distributions


def test_to_spec_rounds_the_float_grid_and_round_trips() -> None:
    space = space_from_dict(TINY)
    params = {"encoder.width": 0.25 + 0.25 + 1e-12, "encoder.depth": 0.3, "decoder.channels": 32,
              "decoder.repeats": 2, "decoder.max_level": 6}
    spec = space.to_spec(params)
    assert spec.encoder.width == 0.5 and spec.decoder.channels == 32 and spec.decoder.max_level == 6
    assert spec.encoder.block == "fused" and spec.encoder.act == "relu"  # from the base preset
    assert space.params_of(spec)["encoder.width"] == 0.5
    assert space.params_of(escale.preset("ESeg-S")) is None
    specs = space.random_specs(6, seed=1)
    assert len({s.spec_id for s in specs}) == 6
    assert all(space.params_of(s) is not None for s in specs)


def test_sample_on_an_optuna_trial() -> None:
    space = space_from_dict(TINY)
    study = optuna.create_study()
    trial = study.ask()
    spec = space.sample(trial)
    assert set(trial.params) == set(TINY["params"])
    assert spec.decoder.channels == trial.params["decoder.channels"]


@pytest.mark.parametrize("entry, message", [
    ({"type": "int", "low": 4, "high": 2}, "empty range low=4 > high=2"),
    ({"type": "int", "low": 16, "high": 40, "step": 16}, "not a multiple of step=16"),
    ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log: true needs low > 0"),
    ({"type": "float", "low": 0.5, "high": 1.0, "step": 0.1, "log": True}, "cannot be combined"),
    ({"type": "categorical", "choices": []}, "non-empty list"),
    ({"type": "int", "low": 1, "high": 2, "stride": 1}, "unknown key 'stride'"),
    ({"type": "uniform", "low": 1, "high": 2}, "expected {type: int|float|categorical"),
    ({"type": "int", "low": 1, "high": 40}, "gives an invalid spec"),  # repeats 40 > 32
])
def test_bad_distributions_are_one_clear_line(entry: dict, message: str) -> None:
    with pytest.raises(SpaceError, match="params.decoder.repeats") as info:
        space_from_dict(with_param("decoder.repeats", entry))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unknown_field_invalid_combination_and_input_size() -> None:
    with pytest.raises(SpaceError, match=r"params.encoder.wdth: unknown field \(allowed: .*encoder.width"):
        space_from_dict(with_param("encoder.wdth", {"type": "int", "low": 1, "high": 2}))
    bad = with_param("decoder.min_level", {"type": "categorical", "choices": [3, 6]})  # 6 >= max_level 5
    with pytest.raises(SpaceError, match="combination .*decoder.min_level=6.*invalid spec"):
        space_from_dict(bad)
    with pytest.raises(SpaceError, match="unknown key 'parms'"):
        space_from_dict({"parms": {}})
    with pytest.raises(SpaceError, match="also listed under fixed"):
        space_from_dict({**TINY, "fixed": {"decoder.repeats": 1}})
    space = space_from_dict(TINY)
    space.check_input_size((32, 64))  # P6 is 1x1 there: the models run
    with pytest.raises(SpecError, match=r"input_size: 0x64 is not allowed \(allowed: H and W >= 1\)"):
        space.check_input_size((0, 64))


def test_malformed_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("params:\n  encoder.width: {type: float, low: 0.3\n")
    with pytest.raises(SpaceError, match=r"bad.yaml: line \d+ malformed YAML"):
        load_space(bad)
    with pytest.raises(SpaceError, match="does not exist"):
        load_space(tmp_path / "nope.yaml")


def test_proxy_reproduces_the_paper_trend() -> None:
    assert level_penalty(9) == 0.0 and level_penalty(5) == -1.8 and level_penalty(7) == -0.6
    assert level_penalty(6) == pytest.approx(-1.2) and level_penalty(8) == pytest.approx(-0.3)
    # the fits pass within 0.5 mIoU of every preset they were fitted on (Table 4, Figure 6)
    for name, paper in (("ESeg-S", 80.1), ("ESeg-M", 81.6), ("ESeg-L", 82.6), ("ESeg-Lite-S", 76.0),
                        ("ESeg-Lite-M", 78.6), ("ESeg-Lite-L", 80.1)):
        spec = escale.preset(name)
        gmacs = {"ESeg-S": 33.95, "ESeg-M": 110.56, "ESeg-L": 340.1, "ESeg-Lite-S": 17.16,
                 "ESeg-Lite-M": 42.74, "ESeg-Lite-L": 114.88}[name]
        res = proxy_miou(spec, int(gmacs * 1e9 / 4), (512, 1024))  # a quarter of the pixels
        assert res.miou == pytest.approx(paper, abs=0.5) and res.accuracy_objective == "paper-trend"
    assert FITS["eseg-lite"][1] > FITS["eseg"][1] > 0  # mIoU rises with FLOPs, faster for the Lite family
