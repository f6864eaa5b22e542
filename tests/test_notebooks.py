"""The notebooks in notebooks/ run top to bottom (nbclient), and are committed without outputs.

The kernel is this test's own Python: a kernelspec is written to a temporary JUPYTER_PATH, so nothing
but ``pip install -e .[dev]`` is needed (no ``ipykernel install``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
KERNEL = "escale-test-python"


@pytest.fixture
def kernel_name(tmp_path, monkeypatch) -> str:
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "escale tests", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return KERNEL


def run_notebook(name: str, kernel_name: str, parameters: str = ""):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    if parameters:
        (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        cell.source += "\n" + parameters
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=180, allow_errors=False,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return nb


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") + out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for c in nb.cells for out in c.get("outputs", []))


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


def test_notebook_a_build_profile_compare(kernel_name):
    nb = run_notebook("a_build_profile_compare.ipynb", kernel_name, parameters='FAMILY = "eseg-full"')
    text = outputs_text(nb)
    assert "ESeg-S P2-P5: levels P2-P5" in text
    assert "P6-P9 add +" in text  # the extra levels cost something, but little (paper Table 1)
    line = next(ln for ln in text.splitlines() if ln.startswith("P6-P9 add"))
    params_pct, flops_pct = (float(tok.rstrip("%")) for tok in line.split() if tok.endswith("%"))
    assert 0 < params_pct < 10 and 0 < flops_pct < 5
    assert images(nb) == 1


@pytest.mark.slow  # ~10 s of CPU; its figures are covered in the default run by test_report_plots/_study
def test_notebook_c_pareto_plots_with_a_study(kernel_name, tmp_path, monkeypatch):
    from test_report_study import make_study  # tests/ is on sys.path (pytest rootdir-relative import)

    from escale.search.study import storage_url

    monkeypatch.setenv("ESCALE_HOME", str(tmp_path))  # the kernel inherits it; STORAGE stays None (the default)
    make_study(storage_url(None, "nbdemo"), "nbdemo")
    nb = run_notebook("c_pareto_plots.ipynb", kernel_name, parameters='STUDY_NAME = "nbdemo"')
    assert images(nb) == 4  # Figure 1, Figure 4, family, study front
    assert "No study given" not in outputs_text(nb)


def test_notebook_b_propose_for_a_latency_budget(kernel_name):
    nb = run_notebook("b_propose_for_budget.ipynb", kernel_name, parameters="TRIALS = 5\nBUDGET_MS = 140.0")
    text = outputs_text(nb)
    assert "ESeg-Lite-S  predicted" in text and "(paper-trend)" in text  # says which accuracy objective produced mIoU
    assert "budget 140.0 ms" in text
    assert images(nb) == 1
