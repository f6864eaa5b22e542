"""``escale benchmark``: settings and errors, the plan, the runner's isolation (with a torch-free stand-in for
the parts, tests/bench_fake_parts.py), the Markdown page, --dry-run without optuna/fvcore/thop, and a real
CPU run of the whole pipeline (slow)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from escale.benchmark import Benchmark, build_plan, make_settings
from escale.benchmark.markdown import headline_rows, paper_fps, render
from escale.benchmark.plan import CUDA_PATHS, PART_KINDS
from escale.cli.main import main
from escale.errors import SpecError

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
ALL_OK = {"cuda": None, "backends": {"torch": None, "onnxruntime": None, "tensorrt": None}, "compile": None}


@pytest.fixture
def fake_children(monkeypatch):
    """Children import tests/bench_fake_parts.py (no torch: each starts in well under a second)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("ESCALE_BENCH_FAULT", raising=False)


# --- settings and errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--backends", "torch,foo"], "--backends: 'foo' is unknown (allowed: torch, onnxruntime, tensorrt)"),
    (["--input-size", "1024"], "--input-size: '1024' is not HxW with positive integers (e.g. 1024x2048)"),
    (["--train-size", "0x5"], "--train-size: '0x5' is not HxW with positive integers (e.g. 512x1024)"),
    (["--models", "ESeg-XL"], "--models: 'ESeg-XL' is unknown (allowed: ESeg-Lite-S, ESeg-Lite-M, ESeg-Lite-L, "
                              "ESeg-S, ESeg-M, ESeg-L)"),
    (["--paths", "torch-fp64"], "--paths: 'torch-fp64' is unknown on cuda (allowed: torch-fp32, "),
    (["--time-limit", "3"], "--time-limit: 3.0 is not allowed (allowed: seconds >= 10)"),
    (["--train-batch", "0"], "--train-batch: 0 is not allowed (allowed: a whole number >= 1)"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(["benchmark", "--dry-run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"escale: error: {message}") and err.count("\n") == 1


def test_unknown_family_is_argparse_choice_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", "--family", "eseg-xl", "--dry-run"])
    assert exc.value.code == 2
    assert "argument --family: invalid choice: 'eseg-xl'" in capsys.readouterr().err


def test_settings_defaults():
    s = make_settings()
    assert s.models == ("ESeg-Lite-S", "ESeg-Lite-M", "ESeg-Lite-L", "ESeg-S", "ESeg-M", "ESeg-L")
    assert s.input_size == (1024, 2048) and s.train_size == (512, 1024) and s.time_limit_s <= 480 - 30
    assert make_settings(models="eseg-lite-s").models == ("ESeg-Lite-S",)
    with pytest.raises(SpecError, match="--train-batch: 1 cannot train BatchNorm at 64x128"):
        make_settings(train_size="64x128", train_batch=1)


# --- the plan ------------------------------------------------------------------------------------------------

def test_plan_orders_parts_and_gives_every_reason():
    probe = {"cuda": None, "compile": "torch.compile on CUDA needs triton, which is not installed",
             "backends": {"torch": None, "onnxruntime": "onnxruntime 1.2 has no CUDAExecutionProvider",
                          "tensorrt": "the tensorrt Python package is not installed"}}
    parts, rows = build_plan(make_settings(models="ESeg-Lite-S,ESeg-S"), probe)
    assert [p.name for p in parts] == ["env", "eager:ESeg-Lite-S", "eager:ESeg-S", "train"]
    assert [p.name for p in parts[1].paths] == ["torch-fp32", "torch-fp16-autocast", "torch-fp16",
                                                "torch-fp16-channels-last", "torch-fp16-cuda-graphs"]
    by = {r["check"]: r for r in rows}
    assert by["ESeg-S torch-fp16-compile"]["reason"] == probe["compile"]
    assert by["ESeg-S onnxruntime-fp32"]["reason"] == probe["backends"]["onnxruntime"]
    assert by["ESeg-Lite-S numerics"]["status"] == "would run" and by["training ESeg-S"]["status"] == "would run"
    assert len(rows) == 1 + 2 * (len(CUDA_PATHS) + 1) + 1  # env, paths and numerics per model, training


def test_plan_without_cuda_and_on_cpu():
    no_gpu = {**ALL_OK, "cuda": "no CUDA GPU visible"}
    parts, rows = build_plan(make_settings(models="ESeg-Lite-S"), no_gpu)
    assert [p.kind for p in parts] == ["env"]
    assert all(r["status"] == "skipped" for r in rows[1:])
    assert all("no CUDA GPU visible" in r["reason"] for r in rows[1:] if not r["check"].endswith("numerics"))
    parts, rows = build_plan(make_settings(models="ESeg-Lite-S", device="cpu", backends="torch,tensorrt"), ALL_OK)
    assert [p.name for p in parts] == ["env", "eager:ESeg-Lite-S", "train", "compile:ESeg-Lite-S"]
    by = {r["check"]: r for r in rows}
    assert by["ESeg-Lite-S tensorrt-fp16"]["reason"] == "TensorRT runs on CUDA only (--device cpu)"
    assert by["ESeg-Lite-S onnxruntime-fp32"]["reason"] == "not asked (--backends torch,tensorrt)"
    assert list(PART_KINDS)[:2] == ["env", "eager"]


def test_plan_without_timm_skips_every_model_and_training():
    why = ("escale builds its models with timm, which cannot be imported here (ModuleNotFoundError: No module "
           "named 'torchvision')")
    parts, rows = build_plan(make_settings(models="ESeg-Lite-S"), {**ALL_OK, "models": why})
    assert [p.kind for p in parts] == ["env"]
    assert all(r["status"] == "skipped" for r in rows[1:])
    assert all(why in r["reason"] for r in rows[1:] if not r["check"].endswith("numerics"))


def test_compile_reason_names_the_missing_compiler(monkeypatch):
    from escale.benchmark import env

    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(env.importlib.util, "find_spec", lambda name: object())  # triton "installed"
    monkeypatch.setattr(env.shutil, "which", lambda name: None)
    assert "needs a C compiler for triton's kernel launchers" in env.compile_reason("cuda")
    assert "needs a C++ compiler" in env.compile_reason("cpu")
    monkeypatch.setenv("CC", "/opt/bin/cc")
    assert env.compile_reason("cuda") is None
    monkeypatch.setattr(env.shutil, "which", lambda name: "/usr/bin/gcc" if name == "gcc" else None)
    monkeypatch.delenv("CC")
    assert env.compile_reason("cuda") is None and env.models_reason() is None  # timm imports here


def test_compile_rows_say_when_inductor_ran_without_cuda_graphs(monkeypatch, tiny_spec):
    """A backend's note (torch: inductor skipped CUDA graphs) becomes the row's note, the timing stays."""
    import torch

    import escale.profiler.latency as latency
    from escale.benchmark.parts import QUICK_TIMING, measure_path
    from escale.profiler.latency.fold import build_folded
    from escale.profiler.latency.torch_backend import TorchBackend, cudagraph_note, cudagraph_skips

    assert cudagraph_note(2).startswith("inductor skipped CUDA graphs (2 times;")
    assert cudagraph_note(1).startswith("inductor skipped CUDA graphs (1 time;")
    assert isinstance(cudagraph_skips(), int)  # the counter this torch keeps

    class Noted(TorchBackend):
        def measure(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            m = super().measure(*args, **kwargs)
            m.notes.append(cudagraph_note(3))
            return m

    monkeypatch.setattr(latency, "get_backend", lambda name: Noted())
    model, _ = build_folded(tiny_spec)
    example = torch.randn(1, 3, 64, 64)
    path = {"backend": "torch", "precision": "fp32", "options": {}}
    row = measure_path(model, example, model(example).float(), tiny_spec, path, "cpu", QUICK_TIMING, 1)
    assert row["status"] == "ok" and row["reason"] == cudagraph_note(3) and row["latency_ms"] > 0


# --- the runner, with the stand-in parts ---------------------------------------------------------------------

def _bench(tmp_path, **kw):
    settings = make_settings(models=kw.pop("models", "ESeg-Lite-S,ESeg-Lite-M"), **kw)
    pages: list[tuple[str, int]] = []

    def page(record: dict) -> str:  # written after every part: count what each write saw
        pages.append((record["status"], len(record["parts"])))
        return render(record)

    bench = Benchmark(settings, {}, parts_module="bench_fake_parts")
    json_path, md_path = bench.run(tmp_path, page)
    return bench.record, json.loads(json_path.read_text()), md_path.read_text(), pages


def test_runner_isolates_crashes_failures_hangs_and_wrong_outputs(fake_children, tmp_path, monkeypatch):
    monkeypatch.setenv("ESCALE_BENCH_FAULT", "torch-fp16=exit,torch-fp16-channels-last=raise,"
                                             "tensorrt-fp16=wrong,torch-fp16-compile=hang,train=raise")
    record, saved, md, pages = _bench(tmp_path, part_timeout_s=3.0)
    assert saved == json.loads(json.dumps(record, default=str)) and saved["status"] == "complete"
    status = {(r["model"], r["path"]): r for r in saved["results"]}
    for model in ("ESeg-Lite-S", "ESeg-Lite-M"):
        assert status[model, "torch-fp32"]["status"] == "ok" and status[model, "torch-fp32"]["fps"] == 500
        crashed = status[model, "torch-fp16"]
        assert crashed["status"] == "crashed" and "exited with code 3" in crashed["reason"]
        assert status[model, "torch-fp16-channels-last"]["status"] == "failed"
        assert status[model, "torch-fp16-cuda-graphs"]["status"] == "ok"  # a fresh child ran the rest
        wrong = status[model, "tensorrt-fp16"]
        assert wrong["status"] == "wrong" and "fps" not in wrong
        hung = status[model, "torch-fp16-compile"]
        assert hung["status"] == "timeout" and "time box (3 s)" in hung["reason"]
    parts = {p["name"]: p for p in saved["parts"]}
    assert parts["eager:ESeg-Lite-S"]["attempts"] == 3  # crash -> restart, CUDA failure -> restart
    assert parts["compile:ESeg-Lite-M"]["status"] == "timeout" and parts["onnxruntime:ESeg-Lite-S"]["status"] == "ok"
    assert saved["training"] == {"status": "error", "reason": "latency: RuntimeError: injected fault in train"}
    assert pages[0] == ("running", 1) and [n for _, n in pages] == sorted(n for _, n in pages)
    assert len(pages) >= len(saved["parts"]) + 1  # rewritten after every part, and at the end
    assert "| ESeg-Lite-S | torch-fp32 | 500 | 2.00 | 189 | 2.65x | met (>= 400) |" in md  # headline
    assert "| ESeg-Lite-S | tensorrt-fp16 | wrong | - | - | - | - |" in md
    assert "Fake GPU 9000" in md and "## Training throughput" in md


def test_time_limit_skips_parts_that_do_not_fit(fake_children, tmp_path):
    _, saved, md, _ = _bench(tmp_path, models="ESeg-Lite-S", time_limit_s=10.0)
    assert [p["status"] for p in saved["parts"]][0] == "ok"
    assert all(p["status"] == "skipped" and "--time-limit 10 s reached" in p["reason"] for p in saved["parts"][1:])
    assert all(r["status"] == "skipped" for r in saved["results"])
    assert saved["training"]["status"] == "skipped"
    second = _bench(tmp_path, models="ESeg-Lite-S", time_limit_s=10.0)
    assert len(list(tmp_path.glob("fake-gpu-9000-*.json"))) == 2 and second  # a second run on the same day: -2
    _, saved, _, _ = _bench(tmp_path, models="ESeg-Lite-S", time_limit_s=40.0)  # room for all but a cold compile
    parts = {p["kind"]: p for p in saved["parts"]}
    assert all(parts[k]["status"] == "ok" for k in ("env", "eager", "train", "onnxruntime"))
    for kind in ("tensorrt", "compile"):
        assert parts[kind]["status"] == "skipped"
        assert re.fullmatch(rf"\d+ s left of --time-limit 40 s, under the 60 s a {kind} part needs at least",
                            parts[kind]["reason"])


def test_env_failure_skips_everything_with_the_reason(fake_children, tmp_path, monkeypatch):
    monkeypatch.setenv("ESCALE_BENCH_FAULT", "env=exit")
    _, saved, _, _ = _bench(tmp_path, models="ESeg-Lite-S")
    assert saved["parts"][0]["status"] == "crashed" and len(saved["parts"]) == 1
    assert all("the environment probe failed (crashed" in r["reason"] for r in saved["results"])


# --- the page ------------------------------------------------------------------------------------------------

def test_paper_figures_and_headline():
    assert paper_fps() == {"ESeg-Lite-S": 189.0, "ESeg-Lite-M": 125.0, "ESeg-Lite-L": 79.0}
    results = [{"model": "ESeg-Lite-S", "path": "a", "status": "ok", "fps": 450.0, "latency_ms": 2.2},
               {"model": "ESeg-Lite-S", "path": "b", "status": "wrong", "fps": None},
               {"model": "ESeg-L", "path": "a", "status": "failed"}]
    assert headline_rows(results) == [["ESeg-Lite-S", "a", "450", "2.20", "189", "2.38x", "met (>= 400)"],
                                      ["ESeg-L", "no right path", "-", "-", "-", "-", "-"]]
    assert headline_rows(results, "cpu")[0][-1] == "-"


# --- without optuna, fvcore, thop (the GPU image), real children -------------------------------------------

def _blocked_env(tmp_path: Path) -> dict[str, str]:
    """``sitecustomize`` makes optuna/fvcore/thop/pandas/matplotlib unimportable here and in every child."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\nfor m in ('optuna', 'fvcore', 'thop', 'pandas', 'matplotlib'):\n    sys.modules[m] = None\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("ESCALE_BENCH_FAULT", None)
    return env


def test_dry_run_without_optuna_fvcore_thop(tmp_path):
    code = ("import sys, escale\nassert sys.modules['optuna'] is None\nfrom escale.cli.main import main\n"
            "sys.exit(main(['benchmark', '--dry-run', '--format', 'json', '--models', 'ESeg-Lite-S']))")
    proc = subprocess.run([sys.executable, "-c", code], env=_blocked_env(tmp_path), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)[0]
    checks = {c["check"]: c for c in out["checks"]}
    assert checks["environment"]["status"] == "would run"
    assert {"ESeg-Lite-S torch-fp32", "ESeg-Lite-S tensorrt-fp16", "ESeg-Lite-S numerics", "training ESeg-S"} <= set(checks)
    if out["probe"]["cuda"]:  # here: no GPU, and each check says so
        assert all(c["status"] == "skipped" and c["reason"] for c in out["checks"][1:])


@pytest.mark.slow
def test_cpu_run_of_the_whole_pipeline(tmp_path):
    """Real children on CPU at 64x128 without optuna/fvcore/thop: numerics against CPU fp32, an injected failure
    in one path, training, the files."""
    env = {**_blocked_env(tmp_path), "ESCALE_BENCH_FAULT": "torch-fp32-channels-last=raise"}
    cmd = [sys.executable, "-m", "escale", "benchmark", "--device", "cpu", "--models", "ESeg-Lite-S", "--input-size",
           "64x128", "--paths", "torch-fp32,torch-fp32-channels-last,onnxruntime-fp32", "--train-size", "64x128",
           "--train-batch", "2", "--train-steps", "2", "--train-warmup", "1", "--out", str(tmp_path / "out"),
           "--format", "json"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)[0]
    rows = {r["path"]: r for r in record["results"]}
    for path in ("torch-fp32", "onnxruntime-fp32"):
        assert rows[path]["status"] == "ok" and rows[path]["numerics"]["rel_diff"] < 1e-3
        assert rows[path]["numerics"]["argmax_agreement"] == 1.0 and rows[path]["fps"] > 0
    assert rows["torch-fp32-channels-last"] == {**rows["torch-fp32-channels-last"], "status": "failed",
                                                "reason": "RuntimeError: injected fault in torch-fp32-channels-last"}
    assert record["training"]["status"] == "ok" and record["training"]["images_per_s"] > 0
    assert record["command"][:3] == ["escale", "benchmark", "--device"]
    files = sorted(p.suffix for p in (tmp_path / "out").iterdir())
    assert files == [".json", ".md"]
