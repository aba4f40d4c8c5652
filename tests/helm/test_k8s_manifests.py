"""The plain manifests in k8s/ are exactly what `make k8s` renders from the chart today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.helm.conftest import ROOT


def test_checked_in_manifests_match_the_chart(helm: Path) -> None:
    spec = importlib.util.spec_from_file_location("render_k8s", ROOT / "helm" / "render_k8s.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh: dict[str, str] = module.render(helm)
    for name, text in fresh.items():
        path = ROOT / "k8s" / name
        assert path.is_file(), f"k8s/{name} is missing: run `make k8s`"
        assert path.read_text(encoding="utf-8") == text, f"k8s/{name} is stale: run `make k8s`"
    stale = {p.name for p in (ROOT / "k8s").glob("*.yaml")} - set(fresh)
    assert not stale, f"k8s/ holds files the chart no longer renders: {sorted(stale)}"
