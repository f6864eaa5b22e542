"""Default locations (escale.paths): independent of the current directory, moved by $ESCALE_HOME, ignored by git."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from escale import paths
from escale.errors import EscaleError

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_LUT = ROOT / "reports" / "lut" / "onnxruntime-cpu-fp32-512x1024-t1.json"


@pytest.fixture
def no_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESCALE_HOME", raising=False)


def defaults() -> dict[str, str]:
    """Every default path a command uses, as the commands compute it."""
    from escale.cli.cmd_plot import default_out as plot_out
    from escale.cli.cmd_report import default_out as report_out
    from escale.search.lut import default_table_path, find_table
    from escale.search.study import default_storage_url

    return {"storage": default_storage_url("s"), "lut_table": str(default_table_path("onnxruntime", "cpu", "fp32",
                                                                                     (512, 1024), 1)),
            "lut_found": str(find_table("onnxruntime", "cpu", "fp32", (512, 1024), 1)),
            "plot": plot_out("family"), "report": report_out(None), "study_report": report_out("s"),
            **{k: str(v) for k, v in paths.locations().items()}}


def test_defaults_come_from_the_package_location_not_the_current_directory(no_home, tmp_path, monkeypatch) -> None:
    assert paths.checkout() == ROOT and paths.home() == ROOT / "reports" == paths.reference_dir()
    here = defaults()
    monkeypatch.chdir(tmp_path)
    assert defaults() == here
    assert here["storage"] == f"sqlite:///{ROOT}/reports/studies/s.db"
    assert here["lut_found"] == str(COMMITTED_LUT) and here["report"] == str(ROOT / "reports" / "eseg-family")
    assert here["lut_table"] == str(ROOT / "reports" / "lut-local" / COMMITTED_LUT.name)  # never over the reference
    assert not (tmp_path / "reports").exists()


def test_escale_home_moves_what_escale_writes_but_not_the_reference(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ESCALE_HOME", str(tmp_path / "h"))
    got = defaults()
    assert got["storage"] == f"sqlite:///{tmp_path}/h/studies/s.db"
    for key in ("lut_table", "lut_build", "plot", "study_report", "studies", "proposals", "plots", "bench"):
        assert got[key].startswith(str(tmp_path / "h")), key
    assert got["lut_found"] == str(COMMITTED_LUT) and got["reference"] == str(ROOT / "reports")
    assert got["home_from"] == "$ESCALE_HOME"
    monkeypatch.setenv("ESCALE_HOME", "rel")  # relative: from the current directory, as any typed path
    monkeypatch.chdir(tmp_path)
    assert paths.home() == tmp_path / "rel"


def test_outside_a_checkout_home_is_the_user_data_folder(no_home, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(paths, "PACKAGE_DIR", tmp_path / "site-packages" / "escale")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.checkout() is None and paths.reference_dir() is None
    assert paths.home() == tmp_path / "xdg" / "escale" and paths.lut_search_path() == [paths.lut_dir()]
    assert paths.family_report_dir() == tmp_path / "xdg" / "escale" / "eseg-family"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert paths.home() == tmp_path / "user" / ".local" / "share" / "escale"
    with pytest.raises(EscaleError, match="--update-reference: escale is not running from its source checkout"):
        paths.bench_dir("profile", update_reference=True)


def git(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    if proc.returncode == 128:
        pytest.skip("not a git checkout")
    return proc


def test_default_outputs_are_ignored_by_git_and_the_reference_is_tracked(no_home) -> None:
    written = [paths.studies_dir() / "s.db", paths.proposals_dir() / "s" / "01.yaml",
               paths.lut_dir() / COMMITTED_LUT.name, paths.plots_dir() / "family.pdf",
               paths.study_report_dir("s") / "README.md", paths.bench_dir("profile") / "bench_profile.json"]
    for path in written:
        assert git("check-ignore", "-q", str(path)).returncode == 0, f"{path} is not ignored by git"
    assert git("ls-files", "--error-unmatch", str(COMMITTED_LUT)).returncode == 0
    assert paths.bench_dir("profile", update_reference=True) == ROOT / "reports" / "profile"


def test_propose_finds_the_committed_table_from_any_folder_and_prefers_yours(no_home, tmp_path, monkeypatch) -> None:
    from escale.search.proposals import load_predictor

    monkeypatch.chdir(tmp_path)
    pred = load_predictor(None, "onnxruntime", "cpu", "fp32", (512, 1024), 1)
    assert pred is not None and pred.table.source == str(COMMITTED_LUT)
    assert load_predictor(None, "onnxruntime", "cpu", "fp32", (256, 512), 1) is None
    mine = tmp_path / "h" / "lut-local" / COMMITTED_LUT.name
    mine.parent.mkdir(parents=True)
    shutil.copy(COMMITTED_LUT, mine)
    monkeypatch.setenv("ESCALE_HOME", str(tmp_path / "h"))
    assert load_predictor(None, "onnxruntime", "cpu", "fp32", (512, 1024), 1).table.source == str(mine)


def test_a_study_in_the_default_storage_loads_from_the_notebooks_folder(tmp_path, monkeypatch) -> None:
    """What notebook (c) does with STORAGE = None, run by nbclient from notebooks/."""
    import optuna

    from escale.report import load_study
    from escale.search.study import storage_url

    monkeypatch.setenv("ESCALE_HOME", str(tmp_path / "h"))
    url = storage_url(None, "nbdemo")
    optuna.create_study(study_name="nbdemo", storage=url, directions=["maximize", "minimize"])
    monkeypatch.chdir(ROOT / "notebooks")
    assert load_study("nbdemo", None).study_name == "nbdemo"
    assert (tmp_path / "h" / "studies" / "nbdemo.db").is_file()
