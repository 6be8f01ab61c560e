#!/usr/bin/env bash
# Memory with many warm apps: starts `buntime` over N apps (each its own
# name, `ttl: 10m`), requests each once so every one holds a loaded module
# and a warm instance, and prints the server's RSS before and after, twice:
#
# - identical: N copies of the hello app. Modules with the same bytes share
#   their compiled code (`runtime/src/wasm/loaded_code.rs`), so this is the
#   cost of an app itself: its pool, settings and one warm instance.
# - distinct: the same hello app with a custom section that differs per copy
#   (the code is the same, the bytes are not), so each app also pays for
#   its own compiled code.
#
#   benches/rss.sh [apps, default 100]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n="${1:-100}"
cargo build --release -q -p buntime -p buntime-fixtures
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
wasm=target/wasm-guests/wasm32-unknown-unknown/release/app_hello.wasm

measure() { # identical|distinct
    local mode="$1" apps="$work/$1"
    for i in $(seq "$n"); do
        mkdir -p "$apps/app$i/1.0.0"
        cp "$wasm" "$apps/app$i/1.0.0/app.wasm"
        if [ "$mode" = distinct ]; then
            # A custom section (id 0, 17 bytes: name length 11, the name
            # "buntime-rss", five digits) appended to the module.
            printf '\x00\x11\x0bbuntime-rss%05d' "$i" >>"$apps/app$i/1.0.0/app.wasm"
        fi
        echo '{ ttl: "10m" }' >"$apps/app$i/1.0.0/worker.jsonc"
    done
    RUNTIME_WORKER_DIRS="$apps" RUNTIME_PLUGIN_DIRS="$work/none" RUNTIME_CACHE_DIR="$work/cache-$mode" \
        RUNTIME_POOL_SIZE=$((n * 2)) RUNTIME_LOG_LEVEL=warn PORT=18099 target/release/buntime serve >/dev/null &
    local pid=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:18099/_/api/health/live >/dev/null 2>&1 && break; sleep 0.1; done
    # Resident memory once it has settled: what start-up and loading left
    # freed goes back to the kernel within a second or two (jemalloc's decay).
    rss() { sleep 3; echo $(( $(ps -o rss= -p "$pid") / 1024 )); }
    local before after warm
    before=$(rss)
    for i in $(seq "$n"); do curl -sf "http://127.0.0.1:18099/app$i/" >/dev/null; done
    warm=$(curl -sf http://127.0.0.1:18099/_/metrics | sed -n 's/.*"apps":\([0-9]*\).*/\1/p')
    after=$(rss)
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    echo "$mode: apps warm: $warm; RSS idle: ${before} MiB; RSS with $n warm apps: ${after} MiB; per app: $(( (after - before) * 1024 / n )) KiB"
}
measure identical
measure distinct
