"""compose.yaml, as `docker-compose config` reads and validates it."""

import os
import subprocess

import yaml

from conftest import ROOT


def compose_config(extra_env):
    return subprocess.run(
        ["docker-compose", "--env-file", ".env.example", "-f", "compose.yaml", "config"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **extra_env},
        capture_output=True,
        text=True,
    )


def test_compose_config_is_valid_and_wires_the_service():
    run = compose_config({"RUNTIME_MASTER_KEY": "k" * 40})
    assert run.returncode == 0, run.stderr
    svc = yaml.safe_load(run.stdout)["services"]["buntime"]
    assert svc["build"]["target"] == "runtime"
    assert svc["healthcheck"]["test"] == ["CMD", "/usr/local/bin/buntime", "health", "--ready"]
    assert svc["environment"]["RUNTIME_MASTER_KEY"] == "k" * 40
    assert {"published": 8000, "target": 8000} in [
        {k: int(p[k]) for k in ("published", "target")} for p in svc["ports"]
    ]
    # `source:target[:mode]`; a named volume's source has no slash.
    mounts = [v.split(":") for v in svc["volumes"]]
    named = {m[0]: m[1] for m in mounts if "/" not in m[0]}
    assert named == {
        "apps": "/var/lib/buntime/apps",
        "plugins": "/var/lib/buntime/plugins",
        "data": "/var/lib/buntime/data",
        "module-cache": "/var/cache/buntime",
    }
    assert "/usr/share/buntime/demo" in svc["environment"]["RUNTIME_WORKER_DIRS"].split(":")
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]


def test_compose_refuses_to_start_without_a_master_key():
    # .env.example leaves the key empty on purpose.
    run = compose_config({})
    assert run.returncode != 0
    assert "set RUNTIME_MASTER_KEY in .env" in run.stderr, run.stderr


def test_env_example_documents_the_master_key():
    text = (ROOT / ".env.example").read_text()
    assert "RUNTIME_MASTER_KEY=\n" in text
    assert "X-API-Key" in text
