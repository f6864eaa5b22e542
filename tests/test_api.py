"""Top-level API: the names the README documents exist, and subpackages load lazily."""

from __future__ import annotations

import subprocess
import sys

import escale


def test_top_level_names():
    for name in ("preset", "family", "load_spec", "build_model", "profile", "records_to_frame", "ESegSpec",
                 "SpecError", "EscaleError"):
        assert hasattr(escale, name), name
    assert callable(escale.train) and escale.train.train.__name__ == "train"
    assert escale.search.load_space.__module__ == "escale.search.space"


def test_import_escale_does_not_import_torch():
    out = subprocess.run([sys.executable, "-c", "import sys, escale; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_package_docstring_example_runs():
    import doctest

    result = doctest.testmod(escale, verbose=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 6 and result.failed == 0
