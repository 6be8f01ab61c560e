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
# Two builds: a `--bin` filter would apply to every package and skip `buntime`.
cargo build --release -q -p buntime -p buntime-fixtures
cargo build --release -q -p buntime-benches --bin native-hello

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
# Plugins: five no-op plugins (each exports on_request and on_response).
plugins="$work/plugins"
for i in 1 2 3 4 5; do
    mkdir -p "$plugins/noop$i"
    cp target/wasm-guests/wasm32-unknown-unknown/release/plugin_noop.wasm "$plugins/noop$i/plugin.wasm"
    echo "{ \"name\": \"noop$i\", \"version\": \"1.0.0\" }" > "$plugins/noop$i/manifest.jsonc"
done
echo '{ plugins: [] }' > "$work/none.jsonc"
echo '{ plugins: ["noop1"] }' > "$work/one.jsonc"
echo '{ plugins: ["noop1", "noop2", "noop3", "noop4", "noop5"] }' > "$work/five.jsonc"
echo '<html><head></head><body>site</body></html>' > "$apps/site/index.html"

serve() { # port config
    RUNTIME_WORKER_DIRS="$apps" RUNTIME_PLUGIN_DIRS="$plugins" RUNTIME_CONFIG="$2" \
        RUNTIME_CACHE_DIR=off RUNTIME_LOG_LEVEL=warn PORT="$1" target/release/buntime serve >/dev/null &
}
serve 18080 "$work/none.jsonc"
serve 18082 "$work/one.jsonc"
serve 18083 "$work/five.jsonc"
target/release/native-hello 18081 &
for port in 18080 18081 18082 18083; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/_/api/health/live" >/dev/null 2>&1 && break
        curl -s "http://127.0.0.1:$port/" >/dev/null 2>&1 && [ "$port" = 18081 ] && break; sleep 0.1; done
done

run() { # name url [connections] -> "rps p50_ms p99_ms"
    curl -sf "$2" >/dev/null # warm up: compile, first instance
    local c="${3:-$conns}"
    wrk -t"$(( c < 2 ? 1 : 2 ))" -c"$c" -d"${secs}s" --latency "$2" >"$work/$1.txt"
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

# The plugin chain: the warm hello app through 0, 1 and 5 no-op plugins.
# Throughput at $conns connections, and latency with one connection (the
# p50 difference there is what one plugin adds to a request).
p0=$(run p0 "http://127.0.0.1:18080/warm/")
p1=$(run p1 "http://127.0.0.1:18082/warm/")
p5=$(run p5 "http://127.0.0.1:18083/warm/")
l0=$(run l0 "http://127.0.0.1:18080/warm/" 1)
l1=$(run l1 "http://127.0.0.1:18082/warm/" 1)
l5=$(run l5 "http://127.0.0.1:18083/warm/" 1)
p0_rps=$(echo "$p0" | cut -d' ' -f1)
l0_p50=$(echo "$l0" | cut -d' ' -f2)
echo
printf '%-22s %12s %10s %10s %10s %14s\n' plugins "req/s" "p50 ms" "p99 ms" "vs 0" "c=1 p50 +µs"
echo "c=1: 0 plugins: $l0 / 1: $l1 / 5: $l5"
for row in "0-plugins $p0 $l0" "1-noop-plugin $p1 $l1" "5-noop-plugins $p5 $l5"; do
    set -- $row
    ratio=$(awk -v a="$2" -v b="$p0_rps" 'BEGIN { printf "%.0f%%", 100 * a / b }')
    added=$(awk -v a="$6" -v b="$l0_p50" 'BEGIN { printf "%.1f", (a - b) * 1000 }')
    printf '%-22s %12s %10s %10s %10s %14s\n' "$1" "$2" "$3" "$4" "$ratio" "$added"
done

rss=$(ps -o rss= -p "$(pgrep -f 'buntime serve' | head -1)")
echo "buntime RSS after the run (0-plugin server): $((rss / 1024)) MiB"
