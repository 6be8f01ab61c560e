"""The Dockerfile: hadolint, and the build commands it shares with the README and
CI (no container engine runs here, so what is checked is that the image is
built by the commands CI runs)."""

import re
import subprocess

from conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(stage_text):
    """(instruction, arguments) pairs, continuation lines joined, comments left out."""
    joined = re.sub(r"\\\n\s*", " ", "\n".join(l for l in stage_text.splitlines() if not l.lstrip().startswith("#")))
    return [tuple(line.split(None, 1)) for line in joined.splitlines() if line.strip()]


BUILDER, RUNTIME = ("FROM " + stage for stage in DOCKERFILE.split("\nFROM ", 2)[1:])


def test_hadolint_passes():
    run = subprocess.run(["hadolint", "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_image_is_built_by_the_commands_ci_and_the_readme_use():
    runs = [args for op, args in instructions(BUILDER) if op == "RUN"]
    x_commands = [c for args in runs for c in re.findall(r"\./x (\w+)", args)]
    assert x_commands == ["setup", "build"], runs
    # CI installs with the same `./x setup`, and its deployment checks build the
    # binary they test with `./x build`.
    assert "./x setup" in (ROOT / ".ci" / "run").read_text()
    assert "deploy/check.sh" in (ROOT / ".ci" / "run").read_text()
    assert "\n./x build\n" in (ROOT / "deploy" / "check.sh").read_text()
    # `./x build` is the function `./x demo` serves from.
    x = (ROOT / "x").read_text()
    assert re.search(r"^build\)\n\s+setup\n\s+build\n", x, re.M)
    assert re.search(r"^demo\)\n(?:.*\n)*?\s+build\n", x, re.M)
    readme = (ROOT / "README.md").read_text()
    deploy = readme.split("## Deploy", 1)[1].split("\n## ", 1)[0]
    assert "./x build" in deploy and "docker compose up" in deploy and "helm install" in deploy


def test_the_runtime_image_is_slim_non_root_and_self_checking():
    ops = instructions(RUNTIME)
    assert ops[0][1].startswith("gcr.io/distroless/cc-debian12:nonroot")
    user = [a for o, a in ops if o == "USER"]
    assert user == ["65532:65532"]
    health = [a for o, a in ops if o == "HEALTHCHECK"][0]
    assert health.endswith('CMD ["/usr/local/bin/buntime", "health", "--ready"]')
    volumes = [a for o, a in ops if o == "VOLUME"][0]
    for path in ("/var/lib/buntime/apps", "/var/lib/buntime/plugins", "/var/lib/buntime/data", "/var/cache/buntime"):
        assert f'"{path}"' in volumes
    assert [a for o, a in ops if o == "EXPOSE"] == ["8000"]
    assert "PORT=8000" in dict(ops)["ENV"]
    assert not [a for o, a in ops if o == "RUN"], "the runtime stage has no shell to run commands"


def test_dockerignore_keeps_build_output_and_secrets_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in ("**/target", ".git", ".env", "**/node_modules", "**/*.wasm"):
        assert entry in ignored
