"""The committed report reports/eseg-family/ must match what the code computes now.

If this fails after a deliberate change to the builder or the counter, regenerate the report with
``escale report --out reports/eseg-family`` and commit it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import escale
from escale.report import family_table, load_records, markdown_table
from escale.report.markdown import FAMILY_MD
from escale.report.tables import FAMILY_COLUMNS

REPORT = Path(__file__).parents[1] / "reports" / "eseg-family"
HINT = "the committed reports/eseg-family is stale: rerun `escale report --out reports/eseg-family` and commit it"


@pytest.fixture(scope="module")
def computed():
    return family_table([escale.profile(s) for s in escale.family("eseg")])


def test_committed_family_table_matches_the_code(computed):
    committed = pd.read_csv(REPORT / "family.csv", keep_default_na=False, na_values=[""])
    assert committed["name"].tolist() == computed["name"].tolist(), HINT
    for col in FAMILY_COLUMNS:
        for name, want, got in zip(committed["name"], committed[col], computed[col], strict=True):
            if isinstance(want, str) or isinstance(got, str):
                assert str(want) == str(got), f"{name}.{col}: committed {want!r}, computed {got!r}; {HINT}"
            elif pd.isna(want) or got is None or pd.isna(got):
                assert pd.isna(want) and (got is None or pd.isna(got)), f"{name}.{col}: {want!r} vs {got!r}; {HINT}"
            else:
                assert float(want) == pytest.approx(float(got), rel=1e-12), f"{name}.{col}: {want} vs {got}; {HINT}"


def test_committed_page_shows_the_computed_table(computed):
    page = (REPORT / "README.md").read_text(encoding="utf-8")
    assert markdown_table(computed, FAMILY_MD) in page, HINT
    for stem in ("figure1", "figure4", "family-flops-miou", "flops-breakdown"):
        assert f"(figures/{stem}.png)" in page
        assert (REPORT / "figures" / f"{stem}.png").is_file() and (REPORT / "figures" / f"{stem}.pdf").is_file()


def test_committed_records_match_the_code(computed):
    records = load_records(REPORT / "records.json")
    assert [(r.name, r.params, r.macs) for r in records] == list(
        zip(computed["name"], computed["params"], computed["macs"], strict=True)), HINT
