#!/usr/bin/env bash
# Tracing cost: server CPU per request of the one-plugin server untraced,
# traced at sampling 1.0 and configured at sampling 0 (OTLP/HTTP to an nginx
# sink on loopback, as in load.sh), each driven in turn by
# `wrk -t1 -c8` (batch class) for a number of rounds, each round starting
# with the next server. CPU is the server's
# utime+stime from /proc/<pid>/stat over the requests wrk completed: on a
# machine shared with other work it moves less than req/s. Prints every round
# and the medians, and the traced/untraced ratios of the medians.
#
#   benches/trace_cpu.sh [seconds per run, default 5] [rounds, default 8]
#
# BASELINE=/path/to/other/buntime adds that binary's untraced and 1.0 servers
# to every round (a before/after comparison in one run).
#
# Needs wrk and nginx. Builds in release first. Linux only (/proc).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. benches/otlp_sink.sh
secs="${1:-5}"
rounds="${2:-8}"
command -v wrk >/dev/null || { echo "trace_cpu.sh: wrk is missing (apt-get install wrk)" >&2; exit 1; }
command -v nginx >/dev/null || { echo "trace_cpu.sh: nginx is missing (apt-get install nginx)" >&2; exit 1; }
export RUST_LIB_BACKTRACE=0
cargo build --release -q -p buntime -p buntime-fixtures

work="$(mktemp -d)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT
guests=target/wasm-guests/wasm32-unknown-unknown/release
mkdir -p "$work/apps/warm/1.0.0" "$work/plugins/noop1"
cp "$guests/app_hello.wasm" "$work/apps/warm/1.0.0/app.wasm"
echo '{ ttl: "10m", maxConcurrency: 64, maxRequests: 0 }' > "$work/apps/warm/1.0.0/worker.jsonc"
cp "$guests/plugin_noop.wasm" "$work/plugins/noop1/plugin.wasm"
echo '{ "name": "noop1", "version": "1.0.0" }' > "$work/plugins/noop1/manifest.jsonc"
echo '{ plugins: ["noop1"] }' > "$work/one.jsonc"
otlp_sink "$work" 18190

names=() ports=()
serve() { # name binary port [VAR=value ...]
    local name="$1" bin="$2" port="$3"; shift 3
    env "$@" RUNTIME_WORKER_DIRS="$work/apps" RUNTIME_PLUGIN_DIRS="$work/plugins" \
        RUNTIME_CONFIG="$work/one.jsonc" RUNTIME_CACHE_DIR=off RUNTIME_LOG_LEVEL=warn \
        PORT="$port" "$bin" serve >/dev/null 2>"$work/$name.log" &
    pids+=($!) names+=("$name") ports+=("$port")
}
traced=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:18190 OTEL_TRACES_SAMPLER=parentbased_traceidratio)
serve off target/release/buntime 18181
serve traced-1.0 target/release/buntime 18182 "${traced[@]}" OTEL_TRACES_SAMPLER_ARG=1.0
serve traced-0 target/release/buntime 18183 "${traced[@]}" OTEL_TRACES_SAMPLER_ARG=0
if [ -n "${BASELINE:-}" ]; then
    serve baseline-off "$BASELINE" 18184
    serve baseline-1.0 "$BASELINE" 18185 "${traced[@]}" OTEL_TRACES_SAMPLER_ARG=1.0
fi
for port in "${ports[@]}"; do
    for _ in $(seq 900); do curl -sf "http://127.0.0.1:$port/_/api/health/live" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -sf --max-time 60 "http://127.0.0.1:$port/warm/" >/dev/null
done

batch=""
if command -v chrt >/dev/null && chrt --batch 0 true 2>/dev/null; then batch="chrt --batch 0"; fi
tick=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
for r in $(seq "$rounds"); do
    line="round $r:"
    # Each round starts with the next server: the one measured first in a
    # round reads differently on this machine, whichever it is.
    for k in "${!names[@]}"; do
        i=$(((k + r - 1) % ${#names[@]}))
        before=$(cpu "${pids[$i]}")
        $batch wrk -t1 -c8 -d"${secs}s" "http://127.0.0.1:${ports[$i]}/warm/" >"$work/wrk.txt"
        after=$(cpu "${pids[$i]}")
        requests=$(awk '/requests in/ { print $1 }' "$work/wrk.txt")
        rps=$(awk '/Requests\/sec/ { print $2 }' "$work/wrk.txt")
        us=$(awk -v a="$before" -v b="$after" -v n="$requests" -v t="$tick" 'BEGIN { printf "%.2f", (b - a) / t * 1e6 / n }')
        echo "${names[$i]} $rps $us" >>"$work/results"
        line="$line ${names[$i]}=${us}us/${rps%.*}rps"
    done
    echo "$line (load $(cut -d' ' -f1 /proc/loadavg))"
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf '%-14s %14s %10s\n' server "CPU us/req" "req/s"
for n in "${names[@]}"; do
    us=$(awk -v n="$n" '$1 == n { print $3 }' "$work/results" | median)
    rps=$(awk -v n="$n" '$1 == n { print $2 }' "$work/results" | median)
    printf '%-14s %14s %10.0f\n' "$n" "$us" "$rps"
    eval "med_${n//[-.]/_}=$us"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "CPU per request, traced 1.0 / off: $(ratio "$med_traced_1_0" "$med_off"); sampling 0 / off: $(ratio "$med_traced_0" "$med_off")"
if [ -n "${BASELINE:-}" ]; then
    echo "baseline, traced 1.0 / off: $(ratio "$med_baseline_1_0" "$med_baseline_off")"
fi
