"""Kernel enumeration, latency tables and the predictor (closed-form checks with a linear fake timer)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

import escale
from escale.search.kernels import Kernel, model_kernels
from escale.search.lut import LatencyTable, TableError, build_table, kernel_module, load_table
from escale.search.predictor import LatencyPredictor, work

SIZE = (64, 128)


def tiny(**over: object) -> escale.ESegSpec:
    return escale.preset("ESeg-Lite-S").with_overrides({
        "encoder.width": 0.25, "encoder.depth": 0.3, "decoder.channels": 16, "decoder.max_level": 6, **over})


def conv_macs(k: Kernel) -> int:
    a = dict(k.attrs)
    ho = (a["h"] + 2 * a["p"] - a["d"] * (a["k"] - 1) - 1) // a["s"] + 1
    wo = (a["w"] + 2 * a["p"] - a["d"] * (a["k"] - 1) - 1) // a["s"] + 1
    return a["cout"] * (a["cin"] // a["g"]) * a["k"] ** 2 * ho * wo


def fake_timer(k: Kernel) -> dict:
    """Latency linear in work: 1 ns per unit plus the 'overhead' kernel's 0.01 ms."""
    return {"raw_ms": 0.01 + 1e-6 * work(k), "iqr_ms": 0.0, "runs": 1}


@pytest.mark.parametrize("repeats", [1, 2])
def test_kernel_counts_follow_the_bifpn_structure(repeats: int) -> None:
    ks = model_kernels(tiny(**{"decoder.repeats": repeats}), SIZE)
    ops = Counter(k.op for k in ks)
    # levels P3-P6: per BiFPN layer 3 top-down + 3 bottom-up nodes, each one weighted sum and one act,
    # 3 nearest upsamplings (top-down) and 3 max-poolings (bottom-up); level fusion adds 1 weighted sum of 4
    # and 3 bilinear upsamplings; the head 1 final resize; P6 is 1 average pooling of P5.
    assert ops["wsum"] == 6 * repeats + 1 and ops["act"] == 6 * repeats
    assert ops["resize"] == 3 * repeats + 3 + 1 and ops["pool"] == 3 * repeats + 1
    sums = Counter(k.get("n") for k in ks if k.op == "wsum")
    assert sums == {2: 4 * repeats, 3: 2 * repeats, 4: 1}
    stem = ks[0]
    assert stem.op == "conv" and dict(stem.attrs) == {"act": "relu", "bias": 1, "cin": 3, "cout": 8, "d": 1, "g": 1,
                                                      "h": 64, "k": 3, "p": 1, "s": 2, "w": 128}
    final = [k for k in ks if k.op == "resize"][-1]
    assert (final.get("c"), final.get("ho"), final.get("wo"), final.get("mode")) == (19, 64, 128, "bilinear")


def test_conv_kernels_carry_every_mac_the_profiler_counts() -> None:
    for spec in (tiny(), tiny(**{"encoder.fused_stages": 3, "decoder.repeats": 2})):
        ks = model_kernels(spec, SIZE)
        assert sum(conv_macs(k) for k in ks if k.op == "conv") == escale.profile(spec, input_size=SIZE).macs


def test_kernel_keys_round_trip_and_modules_have_the_kernel_shapes() -> None:
    ks = sorted(set(model_kernels(tiny(), SIZE)), key=lambda k: k.key)
    for k in ks:
        assert Kernel.from_key(k.key) == k
    for k in [k for k in ks if k.op == "conv"][:3] + [k for k in ks if k.op != "conv"]:
        module, inputs = kernel_module(k)
        with torch.no_grad():
            out = module(*inputs)
        a = dict(k.attrs)
        if k.op == "conv":
            assert out.shape == (1, a["cout"], (a["h"] + 2 * a["p"] - a["k"]) // a["s"] + 1,
                                 (a["w"] + 2 * a["p"] - a["k"]) // a["s"] + 1)
        elif k.op == "resize":
            assert out.shape == (1, a["c"], a["ho"], a["wo"])
        elif k.op in ("wsum", "act", "add"):
            assert out.shape == (1, a["c"], a["h"], a["w"])


def test_table_prediction_is_the_sum_and_neighbours_scale_by_work(tmp_path: Path) -> None:
    spec = tiny()
    table = build_table([spec], SIZE, timer=fake_timer)
    assert table.overhead_ms == pytest.approx(0.01 + 1e-6)  # the 1x1x1 add: one element of work
    pred = LatencyPredictor(table)
    p = pred.predict(spec)
    ks = model_kernels(spec, SIZE)
    assert p.n_found == p.n_kernels == len(ks) and p.n_estimated == 0 and not p.calibrated
    assert p.latency_ms == pytest.approx(sum(1e-6 * work(k) + 0.01 - table.overhead_ms for k in ks))
    # a wider variant: its channel-dependent kernels are missing but estimated exactly (latency is linear in work)
    wide = tiny(**{"decoder.channels": 24})
    q = pred.predict(wide)
    assert q.n_estimated > 0 and q.n_found + q.n_estimated == q.n_kernels and not q.unpriced
    exact = sum(1e-6 * work(k) + 0.01 - table.overhead_ms for k in model_kernels(wide, SIZE))
    assert q.latency_ms == pytest.approx(exact, rel=0.02)
    # calibration: measured = 2 x sum -> slope 2
    cal = pred.fit_calibration([spec, wide], [2 * p.sum_ms, 2 * q.sum_ms], mode="ratio")
    assert cal["slope"] == pytest.approx(2.0) and pred.predict(spec).latency_ms == pytest.approx(2 * p.sum_ms)
    path = table.save(tmp_path / "t.json")
    again = load_table(path)
    assert again.kernels == table.kernels and again.calibration == table.calibration
    assert path.with_suffix(".csv").read_text().startswith("key,op,latency_ms")
    with pytest.raises(TableError, match="is for input"):
        LatencyPredictor(again).predict(spec, input_size=(128, 128))


def test_class_slopes_are_recovered_from_well_conditioned_models() -> None:
    import random

    from escale.search.predictor import CLASSES, _ridge_slopes

    rng = random.Random(0)
    truth = [0.9, 0.5, 0.3, 1.2, 2.0]
    x = [[rng.uniform(5, 100) for _ in CLASSES] for _ in range(12)]
    y = [sum(a * b for a, b in zip(row, truth, strict=True)) for row in x]
    slopes = _ridge_slopes(x, y)
    for k, t in zip(CLASSES, truth, strict=True):
        assert slopes[k] == pytest.approx(t, abs=0.15)  # the pull towards 1 is weak next to 12 exact models


def test_class_calibration_is_applied_per_class() -> None:
    specs = [tiny(**{"decoder.channels": c, "encoder.fused_stages": f}) for c, f in ((16, 7), (32, 3), (24, 5))]
    pred = LatencyPredictor(build_table(specs, SIZE, timer=fake_timer))
    raw = [pred.predict(s) for s in specs]
    cal = pred.fit_calibration(specs, [1.5 * p.sum_ms for p in raw], mode="classes")
    p = pred.predict(specs[1])
    assert p.calibrated and p.latency_ms == pytest.approx(sum(cal["slopes"][k] * v for k, v in p.by_class_ms.items()))
    assert p.latency_ms == pytest.approx(1.5 * p.sum_ms, rel=0.05)


def test_table_files_are_checked(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="does not exist"):
        load_table(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(TableError, match="not a latency table"):
        load_table(tmp_path / "bad.json")
    table = build_table([tiny()], SIZE, timer=fake_timer)
    with pytest.raises(TableError, match="existing table was made for"):
        build_table([tiny()], (64, 64), table=table, timer=fake_timer)


def test_onnxruntime_kernel_timer_measures_real_kernels() -> None:
    from escale.profiler.latency import QUICK
    from escale.search.lut import get_kernel_timer

    timer = get_kernel_timer("onnxruntime", "cpu", "fp32", threads=1, config=QUICK)
    assert timer.clock == "thread_cpu"
    ks = sorted({k for k in model_kernels(tiny(), SIZE) if k.op in ("conv", "wsum", "resize")}, key=lambda k: k.key)
    for k in ks[:4]:
        res = timer(k)
        assert 0 < res["raw_ms"] < 1000 and res["runs"] >= 3
    with pytest.raises(escale.SpecError, match="thread_cpu with threads=1"):
        get_kernel_timer("onnxruntime", "cpu", "fp32", threads=2, clock="thread_cpu")
    with pytest.raises(escale.BackendUnavailableError, match="allowed: onnxruntime"):
        get_kernel_timer("tensorrt", "cuda", "fp16", 1)


def test_table_dataclass_round_trip() -> None:
    t = LatencyTable("onnxruntime", "cpu", "fp32", (64, 128), 1, kernels={"add:c=1,h=1,w=1": {"latency_ms": 0.0}})
    assert LatencyTable.from_dict(t.to_dict()).kernels == t.kernels


# --- the eseg space: squeeze-excite (mean, sigmoid gate, mul) and SiLU ------------------------------
def tiny_eseg(**over: object) -> escale.ESegSpec:
    return escale.preset("ESeg-S").with_overrides({
        "encoder.width": 0.25, "encoder.depth": 0.3, "decoder.channels": 16, "decoder.max_level": 6, **over})


def test_every_eseg_kernel_op_can_be_built_measured_and_priced() -> None:
    from escale.profiler.latency import QUICK
    from escale.search.lut import get_kernel_timer

    ks = sorted(set(model_kernels(tiny_eseg(), SIZE)) | set(model_kernels(tiny_eseg(**{"encoder.block": "fused"}),
                                                                            SIZE)), key=lambda k: k.key)
    ops = Counter(k.op for k in ks)
    assert {"mean", "mul", "conv", "act", "wsum", "resize", "pool"} <= set(ops) and not any(
        op.startswith("unknown:") for op in ops)
    acts = {k.get("act") for k in ks if k.op == "conv"}
    assert {"silu", "sigmoid"} <= acts  # MBConv SiLU, the squeeze-excite gate
    for k in ks:  # every kernel has a module of its own shapes
        module, inputs = kernel_module(k)
        with torch.no_grad():
            out = module(*inputs)
        a = dict(k.attrs)
        if k.op == "mean":
            assert out.shape == (1, a["c"], 1, 1)
        elif k.op == "mul":
            assert out.shape == (1, a["c"], a["h"], a["w"]) and inputs[1].shape == (1, a["c"], a["hb"], a["wb"])
    timer = get_kernel_timer("onnxruntime", "cpu", "fp32", threads=1, config=QUICK)
    for op in ("mean", "mul"):
        k = next(k for k in ks if k.op == op)
        assert 0 < timer(k)["raw_ms"] < 100
    gate = next(k for k in ks if k.op == "conv" and k.get("act") == "sigmoid")
    assert 0 < timer(gate)["raw_ms"] < 100
    pred = LatencyPredictor(build_table([tiny_eseg()], SIZE, timer=fake_timer))
    p = pred.predict(tiny_eseg(**{"encoder.block": "fused", "decoder.channels": 24}))
    assert not p.unpriced and p.n_found + p.n_estimated == p.n_kernels and p.latency_ms > 0


COMMITTED = Path(__file__).resolve().parents[1] / "reports" / "lut" / "onnxruntime-cpu-fp32-512x1024-t1.json"


def test_the_committed_table_covers_both_shipped_spaces_and_says_where_it_was_built() -> None:
    table = load_table(COMMITTED)
    assert table.fingerprint and table.fingerprint["perf_ms"] and table.fingerprint["cpu_model"]
    assert table.fingerprint["input_size"] == [512, 1024] and table.fingerprint["threads"] == 1
    pred = LatencyPredictor(table)
    for name in ("ESeg-Lite-S", "ESeg-Lite-M", "ESeg-Lite-L", "ESeg-S", "ESeg-M", "ESeg-L"):
        p = pred.predict(escale.preset(name))
        assert p.n_found == p.n_kernels and not p.unpriced and p.calibrated, name
    built = {m["name"] for m in table.built_from}
    assert {"ESeg-Lite-S", "ESeg-S"} <= built
    cal_models = {(m["spec"]["encoder"]["se"], m["spec"]["encoder"]["act"]) for m in table.calibration["models"]}
    assert cal_models == {(False, "relu"), (True, "silu")}  # the calibration was fitted on both spaces


# --- bad input: one line naming the file, the field and what was expected; exit 2; nothing overwritten -----
def _table_json(tmp_path: Path) -> dict:
    table = build_table([tiny()], SIZE, timer=fake_timer)
    return json.loads(table.save(tmp_path / "good.json").read_text())


def _first_key(d: dict) -> str:
    return next(iter(d["kernels"]))


BAD_TABLES = {
    "negative latency": (lambda d: d["kernels"][_first_key(d)].update(latency_ms=-1.0), "].latency_ms is -1.0 "
                         "(expected a number of ms >= 0)"),
    "missing latency": (lambda d: d["kernels"][_first_key(d)].pop("latency_ms"), "].latency_ms is 'missing'"),
    "bad key": (lambda d: d["kernels"].update({"conv:cin=3,cout": {"latency_ms": 1.0}}),
                "a kernel key is 'conv:cin=3,cout' (expected OP:name=value"),
    "unknown op": (lambda d: d["kernels"].update({"warp:c=3": {"latency_ms": 1.0}}), "a kernel key is 'warp:c=3'"),
    "format tag": (lambda d: d.update(format="escale-latency-table/0"),
                   "not a latency table: format is 'escale-latency-table/0' (expected 'escale-latency-table/1')"),
    "input size": (lambda d: d.update(input_size=[64]), "input_size is [64] (expected [H, W]"),
    "threads": (lambda d: d.update(threads=0), "threads is 0 (expected a whole number >= 1)"),
    "calibration": (lambda d: d.update(calibration={"mode": "cubic", "slope": 1.0}),
                    "calibration.mode is 'cubic' (expected one of ratio, linear, classes)"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_a_hand_edited_table_is_one_line_naming_file_and_field(case: str, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from escale.cli.main import main

    data = _table_json(tmp_path)
    edit, message = BAD_TABLES[case]
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(tiny().to_yaml())
    for argv in (["lut", "predict", str(spec_file), "--lut", str(path)],
                 ["lut", "build", str(spec_file), "--input-size", "64x128", "--quick", "--out", str(path)],
                 ["lut", "calibrate", "--lut", str(path)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"escale: error: {path}: ") and message in err, (argv, err)
        assert path.read_bytes() == before  # nothing overwritten


def test_a_truncated_table_and_tables_for_other_settings(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import yaml
    from search_common import TINY

    from escale.cli.main import main

    good = json.dumps(_table_json(tmp_path))
    path = tmp_path / "cut.json"
    path.write_text(good[: len(good) // 2])
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(tiny().to_yaml())
    assert main(["lut", "predict", str(spec_file), "--lut", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--lut: {path} is not valid JSON (line " in err
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(TINY))
    base = ["propose", "--space", str(space_file), "--input-size", "64x128", "--trials", "1", "--no-measure",
            "--storage", f"sqlite:///{tmp_path / 'x.db'}"]
    for field, value, shown in (("threads", 2, "threads=2, not 1"), ("backend", "tensorrt", "backend='tensorrt'"),
                                ("input_size", [128, 128], "input_size=[128, 128], not [64, 128]")):
        other = tmp_path / f"other-{field}.json"
        other.write_text(json.dumps({**json.loads(good), field: value}))
        assert main([*base, "--lut", str(other)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--lut: {other} was built for {shown}" in err, err


def test_a_table_from_another_machine_is_never_extended(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from escale.cli.main import main

    data = _table_json(tmp_path)
    data["fingerprint"]["cpu_model"] = "Intel Xeon Platinum 8488C"
    path = tmp_path / "foreign.json"
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(tiny(**{"decoder.channels": 24}).to_yaml())
    assert main(["lut", "build", str(spec_file), "--input-size", "64x128", "--quick", "--out", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"lut build: {path} was built on another machine (cpu_model differs" in err
    assert path.read_bytes() == before
