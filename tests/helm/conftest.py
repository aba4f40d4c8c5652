"""Rendering the chart for its tests: helm from `.tools/bin`, value sets from `ci/`.

Every test renders from a copy of the chart in a temporary folder. While another change
has not yet added the monitoring files the chart embeds, the copy gets placeholders; the
repository is never touched.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "enclave"
HELM = ROOT / ".tools" / "bin" / "helm"
ALERTS = Path("files/prometheus/enclave-alerts.yaml")
DASHBOARD = Path("files/grafana/enclave-dashboard.json")
KUBERAY_CRD = ROOT.parent / "shared" / "schemas" / "kuberay" / "ray.io_rayservices.yaml"
# The Kubernetes version every rendered manifest is validated against.
KUBERNETES_VERSION = "1.31.0"
RELEASE = "enclave"
NAMESPACE = "enclave"

VALUE_SETS: dict[str, list[str]] = {
    "default": [],
    "gpu": ["ci/gpu-values.yaml"],
    "cpu": ["ci/cpu-values.yaml"],
    "minimal": ["ci/minimal-values.yaml"],
}

_PLACEHOLDER_RULES = """groups:
  - name: placeholder
    rules:
      - alert: Placeholder
        expr: vector(0) > 1
"""


@dataclass(frozen=True)
class Rendered:
    """The manifests of one rendering, parsed."""

    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Every manifest of this kind."""
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind: str) -> dict[str, Any]:
        """The single manifest of this kind."""
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary `make tools` installs."""
    if not HELM.is_file():
        pytest.fail(f"{HELM} is missing: run `make tools` first.")
    return HELM


@pytest.fixture(scope="session")
def chart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart, with placeholder monitoring files where they do not exist yet."""
    copy = tmp_path_factory.mktemp("chart") / "enclave"
    shutil.copytree(CHART, copy)
    if not (copy / ALERTS).is_file():
        (copy / ALERTS).parent.mkdir(parents=True, exist_ok=True)
        (copy / ALERTS).write_text(_PLACEHOLDER_RULES, encoding="utf-8")
    if not (copy / DASHBOARD).is_file():
        (copy / DASHBOARD).parent.mkdir(parents=True, exist_ok=True)
        (copy / DASHBOARD).write_text('{"title": "placeholder"}\n', encoding="utf-8")
    return copy


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run helm; the caller checks the exit status."""
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=60, check=False
    )


def template_args(
    chart: Path, value_files: Sequence[str] = (), sets: Sequence[str] = ()
) -> list[str]:
    """`helm template` arguments for the release used by every test."""
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
    for name in value_files:
        args += ["-f", str(chart / name)]
    for item in sets:
        args += ["--set", item]
    return args


@pytest.fixture(scope="session")
def render(helm: Path, chart_dir: Path) -> Callable[..., Rendered]:
    """Render the chart (cached per arguments); a failed render fails the test with helm's words."""
    cache: dict[tuple[tuple[str, ...], tuple[str, ...]], Rendered] = {}

    def _render(value_files: Sequence[str] = (), sets: Sequence[str] = ()) -> Rendered:
        key = (tuple(value_files), tuple(sets))
        if key not in cache:
            result = run_helm(helm, *template_args(chart_dir, value_files, sets))
            assert result.returncode == 0, result.stderr
            docs = [d for d in yaml.safe_load_all(result.stdout) if d]
            cache[key] = Rendered(docs)
        return cache[key]

    return _render


@pytest.fixture(scope="session", params=sorted(VALUE_SETS))
def value_set(request: pytest.FixtureRequest) -> str:
    """Each value set the chart is rendered with."""
    return str(request.param)


@pytest.fixture(scope="session")
def rendered(render: Callable[..., Rendered], value_set: str) -> Rendered:
    """The chart rendered with one value set."""
    return render(VALUE_SETS[value_set])


@pytest.fixture(scope="session")
def default(render: Callable[..., Rendered]) -> Rendered:
    """The chart rendered with its default values."""
    return render()
