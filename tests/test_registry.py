"""The shared registry behind counters, latency backends and datasets."""

from __future__ import annotations

import pytest

from escale.errors import RegistryError
from escale.registry import Registry


def test_register_lookup_and_errors():
    reg: Registry[type] = Registry("widget", "--widget: ")

    @reg.decorator()
    class A:
        name = "a"

    reg.add("b", int)
    assert reg["a"] is A and list(reg) == ["a", "b"] and "b" in reg and len(reg) == 2
    with pytest.raises(RegistryError, match=r"^--widget: 'c' is unknown \(available: a, b\)$"):
        reg["c"]
    with pytest.raises(RegistryError, match="widget: 'a' is already registered"):
        reg.add("a", str)
    with pytest.raises(RegistryError, match="already registered or empty"):
        reg.add("", str)
