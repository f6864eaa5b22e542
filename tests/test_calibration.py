"""Carrying a latency table to another machine: calibrate_table, machine_status, the CLI (fake timers)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

import escale
from escale.cli.main import main
from escale.profiler.latency import fingerprint as fpm
from escale.search import calibration as calm
from escale.search.calibration import (
    CalibrationError,
    calibrate_table,
    calibration_path,
    family,
    load_calibration,
    machine_status,
    sample_kernels,
)
from escale.search.lut import build_table, load_table
from escale.search.predictor import CLASSES, LatencyPredictor, kernel_class, work

SIZE = (64, 128)
PERF = {"conv3x3": 1.0, "conv_dw3x3": 0.5, "conv1x1": 2.0, "resize_bilinear": 1.8, "wsum2": 0.7}
HERE = {"conv_kxk": 2.0, "conv_1x1": 2.0, "conv_dw": 1.6, "resize": 1.5, "other": 1.25}  # this machine / table's
ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "reports" / "lut" / "onnxruntime-cpu-fp32-512x1024-t1.json"


def lite(**over: object) -> escale.ESegSpec:
    return escale.preset("ESeg-Lite-S").with_overrides({
        "encoder.width": 0.25, "encoder.depth": 0.3, "decoder.channels": 16, "decoder.max_level": 6, **over})


def full(**over: object) -> escale.ESegSpec:
    return escale.preset("ESeg-S").with_overrides({
        "encoder.width": 0.25, "encoder.depth": 0.3, "decoder.channels": 16, "decoder.max_level": 6, **over})


def table_timer(k) -> dict:  # noqa: ANN001 - the machine that built the table: linear in work
    return {"raw_ms": 0.01 + 1e-6 * work(k), "iqr_ms": 0.0, "runs": 1}


def here_timer(k) -> dict:  # noqa: ANN001 - this machine: slower, by kernel class
    return {"raw_ms": 0.01 + HERE[kernel_class(k)] * 1e-6 * work(k), "iqr_ms": 0.0, "runs": 1}


def here_model_ms(spec: escale.ESegSpec, table) -> float:  # noqa: ANN001
    """A whole model here: the class-scaled kernel sum, and 10% more (what kernels alone miss)."""
    p = LatencyPredictor(table).predict(spec)
    return 1.1 * sum(HERE[c] * v for c, v in p.by_class_ms.items())


@pytest.fixture(autouse=True)
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake reference-kernel timings, a temporary home and cache: fingerprints are deterministic."""
    monkeypatch.setenv("ESCALE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ESCALE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fpm, "measure_perf", lambda: dict(PERF))


@pytest.fixture
def fake_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real timers replaced by this machine's fakes (for calibrations the CLI runs)."""
    monkeypatch.setattr(calm, "get_kernel_timer", lambda *a, **k: here_timer)
    monkeypatch.setattr(calm, "AnchorTimer", lambda table: lambda spec: here_model_ms(spec, _TABLES[-1]))


_TABLES: list = []


def foreign(table, path: Path) -> Path:  # noqa: ANN001
    """Save ``table`` as if built on another machine (same CPU name, AVX-512, 2.2x faster)."""
    fp = dict(table.fingerprint)
    fp["cpu_flags"] = sorted({*fp["cpu_flags"], "avx512f"} ^ ({"avx512f"} if "avx512f" in fp["cpu_flags"] else set()))
    fp["perf_ms"] = {k: v / 2.2 for k, v in PERF.items()}
    table.fingerprint = fp
    _TABLES.append(table)
    return table.save(path)


def test_class_ratios_and_family_corrections_are_recovered() -> None:
    table = build_table([lite(), full(), lite(**{"decoder.channels": 32})], SIZE, timer=table_timer)
    cal = calibrate_table(table, kernel_timer=here_timer, model_timer=lambda s: here_model_ms(s, table))
    for c in CLASSES:
        assert cal.class_ratios[c] == pytest.approx(HERE[c], rel=0.02), c
    assert {a["family"] for a in cal.anchors} == {"se=0,act=relu", "se=1,act=silu"}
    assert all(v == pytest.approx(1.1, rel=0.02) for v in cal.corrections.values())
    assert {a["spec_id"] for a in cal.anchors} <= {m["spec_id"] for m in table.built_from}
    pred = LatencyPredictor(table, machine=cal)
    for spec in (lite(**{"decoder.channels": 24}), full(**{"decoder.repeats": 2})):  # not anchors, not in the table
        assert pred.predict(spec).latency_ms == pytest.approx(here_model_ms(spec, table), rel=0.03)
        assert pred.predict(spec).calibrated
    assert LatencyPredictor(table).predict(lite()).latency_ms < 0.5 * pred.predict(lite()).latency_ms
    assert cal.table["identity"] == table.identity() and cal.fingerprint["perf_ms"] == PERF and cal.seconds >= 0


def test_twin_anchors_cancel_the_tables_own_error_on_them() -> None:
    """Anchors measured where the table was built (its calibration models): their fit error there is the
    table's, not the machine's. Here = 2x there for kernels and whole models alike, so the right correction is 1."""
    twins = [lite(**{"decoder.channels": c}) for c in (24, 32, 40)] + [full(), full(**{"decoder.channels": 24})]
    table = build_table([lite(), *twins], SIZE, timer=table_timer)
    sums = [LatencyPredictor(table).predict(s).sum_ms for s in twins]
    errors = [0.90, 1.12, 1.05, 0.93, 1.10]  # each model's own deviation from the kernel sum, on both machines
    LatencyPredictor(table).fit_calibration(twins, [e * v for e, v in zip(errors, sums, strict=True)], mode="ratio")
    there = {s.spec_id: e * v for s, e, v in zip(twins, errors, sums, strict=True)}
    assert set(calm.twin_models(table)) == set(there)
    plan = calm.anchor_models(table, LatencyPredictor(table))
    assert {family(s) for s in plan[:2]} == {"se=0,act=relu", "se=1,act=silu"}  # round-robin over families
    assert len(plan) == 5 and {s.spec_id for s in plan} == set(there) and lite().spec_id not in {s.spec_id for s in plan}
    double = lambda k: {"raw_ms": 2 * table_timer(k)["raw_ms"], "iqr_ms": 0.0, "runs": 1}  # noqa: E731
    cal = calibrate_table(table, kernel_timer=double, model_timer=lambda s: 2 * there[s.spec_id], budget_s=60)
    assert all(v == pytest.approx(1.0, rel=0.02) for v in cal.corrections.values()), cal.corrections
    raw = [a["measured_ms"] / a["predicted_ms"] for a in cal.anchors]
    assert max(raw) / min(raw) > 1.15  # uncorrected, each anchor would have biased its family by its own error
    assert all(a["table_measured_ms"] == pytest.approx(there[a["spec_id"]], rel=1e-3) for a in cal.anchors)
    pred = LatencyPredictor(table, machine=cal).predict(lite(**{"decoder.channels": 48}))
    base = LatencyPredictor(table).predict(lite(**{"decoder.channels": 48}))
    assert pred.latency_ms == pytest.approx(2 * base.latency_ms, rel=0.03)


def test_a_family_without_anchor_takes_the_mean_correction() -> None:
    table = build_table([lite()], SIZE, timer=table_timer)
    cal = calibrate_table(table, kernel_timer=here_timer, model_timer=lambda s: here_model_ms(s, table))
    assert list(cal.corrections) == [family(lite())] and cal.correction(full()) == cal.correction(lite())


def test_kernels_are_sampled_per_class_by_latency_mass_and_within_the_budget() -> None:
    table = build_table([lite(), full()], SIZE, timer=table_timer)
    plan = sample_kernels(table, per_class=4)
    assert [kernel_class(k) for k in plan[:5]] == list(CLASSES)  # interleaved: every class early
    assert len(plan) == len(set(plan)) <= 4 * len(CLASSES)

    def slow(k) -> dict:  # noqa: ANN001
        time.sleep(0.1)
        return here_timer(k)

    cal = calibrate_table(table, budget_s=3.0, kernel_timer=slow, model_timer=lambda s: 1.0)
    assert 1 <= len(cal.kernels) < len(sample_kernels(table)) and cal.seconds < 3.0 + 0.3


def test_status_uses_a_calibration_only_for_the_same_table_and_machine(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    table = load_table(foreign(build_table([lite()], SIZE, timer=table_timer), tmp_path / "t.json"))
    status = machine_status(table)
    assert status.foreign and status.table_mismatch.startswith("cpu_flags differs (the table: ")
    assert status.path == Path(calm.paths.lut_calibrations_dir()) / f"t@{status.fingerprint['id']}.json"
    cal = calibrate_table(table, kernel_timer=here_timer, model_timer=lambda s: 2.0)
    cal.save(calibration_path(table, status.fingerprint))
    status = machine_status(table)
    assert not status.foreign and status.calibration.source == str(status.path)
    assert "calibrated for this machine by" in status.describe()
    # the same file no longer fits once the table changes ...
    key = next(iter(table.kernels))
    old = table.kernels[key]["latency_ms"]
    table.kernels[key]["latency_ms"] = old + 1.0
    status = machine_status(table)
    assert status.foreign and status.unused.startswith("table.identity is ")
    table.kernels[key]["latency_ms"] = old
    # ... or this machine does (same name and flags, reference kernels 40% slower: booted on another host)
    monkeypatch.setattr(fpm, "measure_perf", lambda: {k: 1.4 * v for k, v in PERF.items()})
    monkeypatch.setattr(fpm, "_boot_id", lambda: "another-boot")
    assert machine_status(table).unused.startswith("fingerprint: reference kernels take 1.40x")
    slower = fpm.current_fingerprint(input_size=SIZE)
    status = machine_status(table, fingerprint=slower)
    assert status.foreign and status.unused.startswith("fingerprint: reference kernels take 1.40x")
    with pytest.raises(CalibrationError, match="it was made on another machine; calibrate with"):
        machine_status(table, calibration=status.path, fingerprint=slower)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(not COMMITTED.is_file(), reason="no committed table")
def test_cli_calibrate_writes_to_the_user_location_never_the_table(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    committed = load_table(COMMITTED)
    _TABLES.append(committed)
    monkeypatch.setattr(calm, "get_kernel_timer", lambda *a, **k: lambda kernel: {
        "raw_ms": committed.overhead_ms + (0.7 * committed.kernels[kernel.key]["latency_ms"]
                                           if kernel.key in committed.kernels else 0.0)})
    twins = calm.twin_models(committed)  # a machine 0.7x the one that built the table, whole models included
    monkeypatch.setattr(calm, "AnchorTimer", lambda table: lambda spec: 0.7 * (
        twins[spec.spec_id][1] if spec.spec_id in twins else LatencyPredictor(committed).predict(spec).latency_ms))
    before = sha(COMMITTED)
    assert main(["lut", "calibrate", "--lut", str(COMMITTED), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)[0]
    path = Path(out["path"])
    fp_id = fpm.current_fingerprint(input_size=(512, 1024))["id"]
    assert path == tmp_path / "home" / "lut-calibrations" / f"{COMMITTED.stem}@{fp_id}.json" and path.is_file()
    assert sha(COMMITTED) == before and out["table"]["identity"] == committed.identity()
    assert all(v == pytest.approx(0.7, rel=1e-3) for v in out["class_ratios"].values())
    assert main(["lut", "predict", "ESeg-Lite-S", "--lut", str(COMMITTED), "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["machine_calibration"] == str(path)
    assert row["predicted_latency_ms"] == pytest.approx(
        0.7 * LatencyPredictor(committed).predict(escale.preset("ESeg-Lite-S")).latency_ms, rel=1e-3)
    assert sha(COMMITTED) == before


def test_cli_predict_warns_on_a_foreign_table_and_uses_a_calibration(tmp_path: Path, capsys, fake_here) -> None:  # noqa: ANN001
    lut = foreign(build_table([lite()], SIZE, timer=table_timer), tmp_path / "t.json")
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(lite(**{"decoder.channels": 24}).to_yaml())
    assert main(["lut", "predict", str(spec_file), "--lut", str(lut), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    row = json.loads(out)[0]
    assert row["table_built_here"] is False and row["machine_calibration"] is None
    assert err.count("\n") == 1 and err.startswith(f"escale: warning: {lut} was built on another machine (cpu_flags")
    assert f"run `escale lut calibrate --lut {lut}`" in err
    assert main(["lut", "calibrate", "--lut", str(lut)]) == 0
    out = capsys.readouterr().out
    assert "Calibration of" in out and "anchor" in out
    assert main(["lut", "predict", str(spec_file), "--lut", str(lut)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "calibrated for this machine by" in out.replace("\n", " ")


def test_cli_propose_calibrates_a_foreign_table_first_or_refuses(tmp_path: Path, capsys, fake_here) -> None:  # noqa: ANN001
    import yaml
    from search_common import TINY

    from escale.search import space_from_dict

    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(TINY))
    space = space_from_dict(TINY)
    ends = [space.to_spec(space.corners()[0]), space.to_spec(space.corners()[-1])]
    lut = foreign(build_table(ends, SIZE, timer=table_timer), tmp_path / "lut.json")
    before = sha(lut)
    base = ["propose", "--space", str(space_file), "--input-size", "64x128", "--trials", "2", "--lut", str(lut),
            "--no-measure", "--budget-ms", "1000", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--seed", "0",
            "--out", str(tmp_path / "out"), "--format", "json"]
    assert main([*base, "--no-calibrate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--lut: {lut} was built on another machine (cpu_flags differs" in err
    assert f"run `escale lut calibrate --lut {lut}`" in err and not (tmp_path / "home" / "lut-calibrations").exists()
    assert main(base) == 0
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if not ln.startswith("propose: ")]
    assert len(lines) == 2 and lines[0].startswith(f"escale: latency table {lut} was built on another machine")
    assert " calibrated it for this one in " in lines[0] and lines[0].endswith(".json")
    assert lines[1].startswith(f"escale: latency table: {lut}, calibrated for this machine by")
    rows = json.loads(out)
    (cal_file,) = (tmp_path / "home" / "lut-calibrations").glob("lut@*.json")
    assert rows and sha(lut) == before
    cal = load_calibration(cal_file)
    assert cal.class_ratios["conv_kxk"] == pytest.approx(2.0, rel=0.02)
    assert main([*base, "--no-calibrate", "--study-name", "again"]) == 0  # now calibrated: no refusal
    err = capsys.readouterr().err
    assert "calibrated it for this one" not in err and f"calibrated for this machine by {cal_file}" in err


def test_bad_calibration_files_are_one_line_errors_and_never_overwritten(tmp_path: Path, capsys, fake_here) -> None:  # noqa: ANN001
    lut = foreign(build_table([lite()], SIZE, timer=table_timer), tmp_path / "t.json")
    table = load_table(lut)
    good = calibrate_table(table, kernel_timer=here_timer, model_timer=lambda s: 1.0).save(tmp_path / "c.json")
    data = json.loads(good.read_text())
    other_table = foreign(build_table([full()], SIZE, timer=table_timer), tmp_path / "other.json")
    cases = {
        "machine": ({**data, "fingerprint": {**data["fingerprint"], "cpu_model": "Intel Xeon"}},
                    "fingerprint: cpu_model differs (the calibration: 'Intel Xeon'"),
        "table": ({**data, "table": {**data["table"], "identity": load_table(other_table).identity()}},
                  "table.identity is "),
        "format": ({**data, "format": "other"}, "format is 'other' (expected 'escale-lut-calibration/1'"),
        "ratios": ({k: v for k, v in data.items() if k != "class_ratios"}, "class_ratios is 'missing' (expected"),
        "negative": ({**data, "corrections": {"se=0,act=relu": -1.0}}, "corrections is {'se=0,act=relu': -1.0}"),
    }
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(lite().to_yaml())
    for name, (content, message) in cases.items():
        path = tmp_path / f"bad-{name}.json"
        path.write_text(json.dumps(content))
        assert main(["lut", "predict", str(spec_file), "--lut", str(lut), "--calibration", str(path)]) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"escale: error: {path}: " in err and message in err, (name, err)
    # a malformed file where propose looks: one line, and neither it nor the table is overwritten
    auto = calibration_path(table, fpm.current_fingerprint(input_size=SIZE))
    auto.parent.mkdir(parents=True)
    auto.write_text("{\"format\": \"escale-lut-calibration/1\", \"table\": 3")
    before = (sha(auto), sha(lut))
    assert main(["lut", "predict", str(spec_file), "--lut", str(lut)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{auto}: not valid JSON" in err and (sha(auto), sha(lut)) == before
