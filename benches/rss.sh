#!/usr/bin/env bash
# Memory with many warm apps: starts `buntime` over N copies of the hello app
# (each its own name, `ttl: 10m`), requests each once so every one holds a
# compiled module and a warm instance, and prints the server's RSS before and
# after. The compiled code is shared only between instances of one app, so
# this measures the per-app cost.
#
#   benches/rss.sh [apps, default 100]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n="${1:-100}"
cargo build --release -q -p buntime -p buntime-fixtures
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
wasm=target/wasm-guests/wasm32-unknown-unknown/release/app_hello.wasm
for i in $(seq "$n"); do
    mkdir -p "$work/apps/app$i/1.0.0"
    cp "$wasm" "$work/apps/app$i/1.0.0/app.wasm"
    echo '{ ttl: "10m" }' > "$work/apps/app$i/1.0.0/worker.jsonc"
done
RUNTIME_WORKER_DIRS="$work/apps" RUNTIME_PLUGIN_DIRS="$work/none" RUNTIME_CACHE_DIR="$work/cache" \
    RUNTIME_POOL_SIZE=$((n * 2)) RUNTIME_LOG_LEVEL=warn PORT=18099 target/release/buntime serve >/dev/null &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:18099/_/api/health/live >/dev/null 2>&1 && break; sleep 0.1; done
# Resident memory once it has settled: what start-up and loading left freed
# goes back to the kernel within a second or two (jemalloc's decay).
rss() { sleep 3; echo $(( $(ps -o rss= -p "$pid") / 1024 )); }
before=$(rss)
for i in $(seq "$n"); do curl -sf "http://127.0.0.1:18099/app$i/" >/dev/null; done
warm=$(curl -sf http://127.0.0.1:18099/_/metrics | sed -n 's/.*"apps":\([0-9]*\).*/\1/p')
after=$(rss)
echo "apps warm: $warm; RSS idle: ${before} MiB; RSS with $n warm apps: ${after} MiB; per app: $(( (after - before) * 1024 / n )) KiB"
