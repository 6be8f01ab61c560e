#!/usr/bin/env bash
# Load harness: drives the real `buntime` binary over loopback with wrk and
# compares each scenario with a native axum hello handler measured in the same
# run. Prints a table of req/s, p50, p99 and the ratio to native.
#
#   benches/load.sh [seconds per scenario, default 10] [connections, default 32]
#
# Needs wrk (apt-get install wrk). Builds in release first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs="${1:-10}"
conns="${2:-32}"
command -v wrk >/dev/null || { echo "load.sh: wrk is missing (apt-get install wrk)" >&2; exit 1; }
export RUST_LIB_BACKTRACE=0
cargo build --release -q -p buntime -p buntime-fixtures -p buntime-benches --bin native-hello

work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
apps="$work/apps"
wasm=target/wasm-guests/wasm32-unknown-unknown/release/app_hello.wasm
mkdir -p "$apps/warm/1.0.0" "$apps/ephemeral/1.0.0" "$apps/site"
cp "$wasm" "$apps/warm/1.0.0/app.wasm"
cp "$wasm" "$apps/ephemeral/1.0.0/app.wasm"
echo '{ ttl: "10m", maxConcurrency: 64, maxRequests: 0 }' > "$apps/warm/1.0.0/worker.jsonc"
echo '{ ttl: 0, maxConcurrency: 64 }' > "$apps/ephemeral/1.0.0/worker.jsonc"
printf 'hello' > "$apps/site/hello.txt"
echo '<html><head></head><body>site</body></html>' > "$apps/site/index.html"

RUNTIME_WORKER_DIRS="$apps" RUNTIME_CACHE_DIR=off RUNTIME_LOG_LEVEL=warn PORT=18080 \
    target/release/buntime serve >/dev/null &
target/release/native-hello 18081 &
for port in 18080 18081; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/_/api/health/live" >/dev/null 2>&1 && break
        curl -s "http://127.0.0.1:$port/" >/dev/null 2>&1 && [ "$port" = 18081 ] && break; sleep 0.1; done
done

run() { # name url -> "rps p50_ms p99_ms"
    curl -sf "$2" >/dev/null # warm up: compile, first instance
    wrk -t2 -c"$conns" -d"${secs}s" --latency "$2" >"$work/$1.txt"
    awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
        function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
        END { printf "%s %.3f %.3f\n", rps, ms(p50), ms(p99) }' "$work/$1.txt"
}

native=$(run native "http://127.0.0.1:18081/")
warm=$(run warm "http://127.0.0.1:18080/warm/")
ephemeral=$(run ephemeral "http://127.0.0.1:18080/ephemeral/")
static=$(run static "http://127.0.0.1:18080/site/hello.txt")

native_rps=$(echo "$native" | cut -d' ' -f1)
printf '%-22s %12s %10s %10s %10s\n' scenario "req/s" "p50 ms" "p99 ms" "vs native"
for row in "native-axum $native" "pdk-warm $warm" "pdk-ephemeral $ephemeral" "static-file $static"; do
    set -- $row
    ratio=$(awk -v a="$2" -v b="$native_rps" 'BEGIN { printf "%.0f%%", 100 * a / b }')
    printf '%-22s %12s %10s %10s %10s\n' "$1" "$2" "$3" "$4" "$ratio"
done
rss=$(ps -o rss= -C buntime | head -1)
echo "buntime RSS after the run: $((rss / 1024)) MiB"
