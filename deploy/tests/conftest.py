"""Shared helpers of the deployment checks: the repository's paths, the chart
rendered through the Helm SDK, and `buntime check` run with a given environment."""

import os
import re
import subprocess
from pathlib import Path

import helm_python as helm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "buntime"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
# The Kubernetes version the rendered manifests are validated against.
KUBE_VERSION = "1.37.0"

UNKNOWN = re.compile(r"^warning: (\S+) is set, but Buntime reads no such variable", re.M)


def full_values() -> dict:
    return yaml.safe_load(FULL_VALUES.read_text())


def render(values: dict | None = None) -> list[dict]:
    """The chart's manifests for `values`, as the objects `helm install` would apply."""
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values, name="rel", namespace="ns", is_install=True)
    docs = []
    for name, text in sorted(out.items()):
        if name.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def buntime_check(env: dict[str, str], files: dict[str, str], root: Path) -> tuple[int, str, set[str]]:
    """Runs `buntime check` with `env` as a container would see it.

    Absolute paths in values (`/var/lib/buntime/apps`, `a:b` lists) are moved
    under `root` and created as directories, except those in `files`, which are
    written there with their content. Returns the exit code, the output and the
    `RUNTIME_*` variables the binary says it does not read."""
    bin_path = os.environ.get("BUNTIME_BIN")
    if not bin_path:
        pytest.fail("BUNTIME_BIN is not set: run these checks through deploy/check.sh")
    moved = {}
    for name, value in env.items():
        parts = value.split(":")
        if value and all(p.startswith("/") for p in parts):
            local = [str(root / p.lstrip("/")) for p in parts]
            for p, l in zip(parts, local):
                if p in files:
                    Path(l).parent.mkdir(parents=True, exist_ok=True)
                    Path(l).write_text(files[p])
                else:
                    Path(l).mkdir(parents=True, exist_ok=True)
            value = ":".join(local)
        moved[name] = value
    run = subprocess.run(
        [bin_path, "check"],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(root), **moved},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = run.stdout + run.stderr
    return run.returncode, output, set(UNKNOWN.findall(run.stdout))


# Variables the chart, image or compose file set for features being built
# elsewhere (API keys, public metrics): until the binary reads them, `buntime
# check` names them, and only them, as unknown. A name leaves this list when the
# binary learns it (docs/configuration.md then lists it).
PENDING = {"RUNTIME_MASTER_KEY", "RUNTIME_METRICS_PUBLIC"}
