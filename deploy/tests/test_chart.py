"""The Helm chart: strict lint, rendering with default and full values, every
manifest against the Kubernetes schemas, the schema refusing bad values, the
replica refusal, and the README's values table."""

import json

import helm_python as helm
import kubernetes_validate as kv
import pytest
import yaml

from conftest import CHART, KUBE_VERSION, full_values, one, render

# Kinds of custom resources, whose schemas kubernetes-validate does not ship (nor
# does any PyPI package usable here: docs/deployment.md, "The checks"); the tests
# below check how they point at the Service instead.
CUSTOM = {"HTTPRoute", "Route", "ServiceMonitor"}


@pytest.mark.parametrize("values", [None, "full"], ids=["default", "full"])
def test_lint_is_clean_in_strict_mode(values):
    report = helm.lint(
        CHART,
        full_values() if values else None,
        strict=True,
        kube_version=f"v{KUBE_VERSION}",
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("values", [None, "full"], ids=["default", "full"])
def test_every_manifest_is_valid_for_current_kubernetes(values):
    docs = render(full_values() if values else None)
    kinds = set()
    for doc in docs:
        kinds.add(doc["kind"])
        if doc["kind"] in CUSTOM:
            continue
        try:
            kv.validate(doc, KUBE_VERSION, strict=True)
        except kv.ValidationError as e:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {e.message} at {list(e.path)}")
    expected = {"Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount", "PersistentVolumeClaim"}
    if values:
        expected |= CUSTOM | {"Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"}
    assert kinds == expected


def test_the_pod_is_locked_down_and_probed():
    deploy = one(render(), "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/_/api/health/live"
    assert c["readinessProbe"]["httpGet"]["path"] == "/_/api/health/ready"
    assert c["startupProbe"]["httpGet"]["path"] == "/_/api/health/live"
    assert c["resources"]["limits"]["memory"]
    env = {e["name"]: e for e in c["env"]}
    assert env["RUNTIME_HOST"]["value"] == "0.0.0.0"
    # Every writable path is a volume: the root filesystem is read-only.
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    for var in ("RUNTIME_WORKER_DIRS", "RUNTIME_PLUGIN_DIRS", "RUNTIME_DATA_DIR"):
        assert env[var]["value"] in mounts, var
    assert "/tmp" in mounts


def test_the_grace_period_covers_the_shutdown_timeout():
    for values, shutdown in [(None, 30), ({"buntime": {"shutdownTimeoutSeconds": 90}, "preStopSleepSeconds": 0}, 90)]:
        pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["RUNTIME_SHUTDOWN_TIMEOUT"] == f"{shutdown}s"
        pre = pod["containers"][0].get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        assert pod["terminationGracePeriodSeconds"] >= pre + shutdown + 5


def container_env(values=None):
    c = one(render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in c["env"]}


def test_trusted_proxies_and_the_module_cache_follow_the_values():
    env = container_env()
    assert "RUNTIME_TRUSTED_PROXIES" not in env
    assert env["RUNTIME_CACHE_DIR"] == "/var/lib/buntime/data/module-cache"
    assert env["RUNTIME_CACHE_DIR"].startswith(env["RUNTIME_DATA_DIR"] + "/")
    env = container_env(full_values())
    assert env["RUNTIME_TRUSTED_PROXIES"] == "10.0.0.0/8,fd00::/8"
    # An emptyDir is world-writable: the cache would refuse it.
    env = container_env({"persistence": {"data": {"enabled": False}}})
    assert env["RUNTIME_CACHE_DIR"] == "off"
    assert container_env({"buntime": {"moduleCache": False}})["RUNTIME_CACHE_DIR"] == "off"


def test_buntime_jsonc_is_rendered_from_values():
    values = full_values()
    cm = one(render(values), "ConfigMap")
    assert json.loads(cm["data"]["buntime.jsonc"]) == values["buntime"]["config"]


def test_the_master_key_comes_from_a_secret():
    docs = render({"masterKey": {"value": "k" * 40}})
    secret = one(docs, "Secret")
    env = {e["name"]: e for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    ref = env["RUNTIME_MASTER_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["data"]
    # A generated key is long and random (kept across upgrades by a lookup).
    generated = one(render(), "Secret")["data"]["RUNTIME_MASTER_KEY"]
    assert generated != one(render(), "Secret")["data"]["RUNTIME_MASTER_KEY"]
    # An existing Secret: the chart makes none and reads that one.
    docs = render({"masterKey": {"existingSecret": "ops-keys", "existingSecretKey": "admin"}})
    assert not [d for d in docs if d["kind"] == "Secret"]
    env = {e["name"]: e for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RUNTIME_MASTER_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "ops-keys", "key": "admin"}


def test_existing_claims_are_used_and_none_is_created_for_them():
    docs = render(full_values())
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert claims == {"rel-buntime-data", "rel-buntime-plugins"}
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["apps"]["persistentVolumeClaim"]["claimName"] == "buntime-apps"


def test_custom_resources_point_at_the_service():
    docs = render(full_values())
    svc = one(docs, "Service")
    name, port = svc["metadata"]["name"], svc["spec"]["ports"][0]
    route = one(docs, "HTTPRoute")["spec"]
    assert route["parentRefs"] and route["rules"][0]["backendRefs"] == [{"name": name, "port": port["port"]}]
    osr = one(docs, "Route")["spec"]
    assert osr["to"]["name"] == name and osr["port"]["targetPort"] == port["name"]
    sm = one(docs, "ServiceMonitor")["spec"]
    assert sm["endpoints"][0]["port"] == port["name"]
    assert sm["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    # Scraping without a key needs public metrics.
    env = {e["name"]: e.get("value") for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RUNTIME_METRICS_PUBLIC"] == "true"


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": 2},
        {"autoscaling": {"enabled": True, "maxReplicas": 3}},
        {"replicaCount": 2, "persistence": {"data": {"enabled": False}}},
        {"replicaCount": 2, "persistence": {"data": {"accessModes": ["ReadWriteOncePod"]}}},
    ],
)
def test_more_than_one_replica_with_a_per_pod_data_volume_is_refused(values):
    with pytest.raises(helm.HelmError) as refused:
        render(values)
    message = str(refused.value)
    assert "replicas do not share state yet" in message, message
    assert "Keep replicaCount at 1" in message, message


def test_a_values_file_violating_the_schema_is_rejected(tmp_path):
    bad = yaml.safe_load((CHART.parent.parent / "deploy" / "tests" / "bad-values.yaml").read_text())
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(full_values())
        for key, value in bad.items():
            with pytest.raises(helm.HelmValuesError) as rejected:
                chart.validate_schema({key: value})
            assert key in str(rejected.value), rejected.value
        with pytest.raises(helm.HelmError):
            chart.render(bad, name="rel", namespace="ns")
    report = helm.lint(CHART, bad, strict=True)
    assert report["errors"] or [m for m in report["messages"] if m["severity"] >= 2]


def leaves(tree, prefix=""):
    """Dotted paths of values.yaml down to scalars, lists and empty maps."""
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("config", "podSecurityContext", "securityContext", "resources"):
            yield from leaves(value, path + ".")
        else:
            yield path


def test_the_schema_and_the_readme_cover_every_value():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    for path in leaves(values):
        node = schema
        for part in path.split("."):
            node = node["properties"][part]
        assert node.get("description"), f"{path}: no description in values.schema.json"
        assert f"| `{path}` |" in readme, f"{path}: not in the README's values table"
