"""Every environment variable the chart, the image and the compose file set is
one the binary reads: `buntime check` runs with the environment each of them
gives the container (and the chart's buntime.jsonc), exits 0, and names none of
them as unknown beyond the PENDING list."""

import base64
import re
import subprocess

import pytest
import yaml

from conftest import PENDING, ROOT, buntime_check, full_values, one, render


def pod_environment(docs):
    """The container's environment, Secret references resolved, and the files
    its ConfigMap mounts put in place."""
    deploy = one(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    secrets = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "Secret"}
    env = {}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            data = secrets.get(ref["name"], {ref["key"]: base64.b64encode(b"an existing secret").decode()})
            env[e["name"]] = base64.b64decode(data[ref["key"]]).decode()
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    files = {}
    for m in container["volumeMounts"]:
        cm = volumes[m["name"]].get("configMap")
        if cm:
            for key, text in configmaps[cm["name"]].items():
                files[f"{m['mountPath']}/{key}"] = text
    return env, files


@pytest.mark.parametrize("values", [None, "full"], ids=["default", "full"])
def test_the_chart_sets_only_variables_the_binary_reads(values, tmp_path):
    env, files = pod_environment(render(full_values() if values else None))
    assert env["RUNTIME_CONFIG"] in files, "RUNTIME_CONFIG names no file the ConfigMap mounts"
    code, output, unknown = buntime_check(env, files, tmp_path)
    assert code == 0, output
    assert unknown <= PENDING, f"the chart sets variables the binary does not read: {unknown - PENDING}\n{output}"
    if unknown:
        print(f"still pending in the binary: {sorted(unknown)}")


def dockerfile_env():
    """The runtime stage's ENV, as `KEY=VALUE` pairs over continued lines."""
    text = (ROOT / "Dockerfile").read_text()
    stage = text.split("AS runtime", 1)[1]
    block = re.search(r"^ENV (.*?)(?<!\\)\n", stage, re.S | re.M).group(1)
    return dict(pair.split("=", 1) for pair in block.replace("\\\n", " ").split())


def test_the_image_and_compose_set_only_variables_the_binary_reads(tmp_path):
    env = dockerfile_env()
    assert env["RUNTIME_HOST"] == "0.0.0.0"
    config = subprocess.run(
        ["docker-compose", "--env-file", ".env.example", "-f", "compose.yaml", "config"],
        cwd=ROOT,
        env={"PATH": __import__("os").environ["PATH"], "RUNTIME_MASTER_KEY": "k" * 40},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    env.update(yaml.safe_load(config)["services"]["buntime"]["environment"])
    # The image's demo dir, as the builder lays it out.
    env = {k: str(v) for k, v in env.items()}
    # A config without the core plugins keeps the check quick (a debug build
    # compiles them slowly); the chart's test loads them.
    files = {"/etc/buntime/buntime.jsonc": '{"plugins": [{"name": "@buntime/plugin-database", "enabled": false}, {"name": "@buntime/plugin-keyval", "enabled": false}]}'}
    env["RUNTIME_CONFIG"] = "/etc/buntime/buntime.jsonc"
    code, output, unknown = buntime_check(env, files, tmp_path)
    assert code == 0, output
    assert unknown <= PENDING, f"unknown to the binary: {unknown - PENDING}\n{output}"
