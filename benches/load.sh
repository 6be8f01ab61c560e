#!/usr/bin/env bash
# Load harness: drives the real `buntime` binary over loopback with wrk and
# compares each scenario with a native axum hello handler measured in the same
# run. Prints a table of req/s, p50, p99 and the ratio to native.
#
#   benches/load.sh [seconds per scenario, default 6] [connections, default 32] [rounds, default 3]
#
# Every scenario runs once per round, the rounds one after another, and each
# row shows its median round: this machine's speed drifts by tens of percent
# within minutes, and interleaving puts every scenario and its baseline
# through the same drift.
#
# wrk runs in the SCHED_BATCH scheduling class (`chrt --batch 0`) when the
# machine allows it. Client and servers share the two cores, and a wrk thread
# woken by a response (an interactive task under the kernel's fair scheduler)
# preempts the server thread whose `writev` woke it, whenever that thread has
# used more than its share of its core. A server that spends more CPU per
# request than wrk then pays two context switches per request on top of its
# own work (measured: 0.46 involuntary switches per warm request against 0.10
# for native, with wrk's own CPU per request doubling as well), so the ratio
# compared which side of that threshold a server falls on rather than what
# its requests cost. A batch-class client does not preempt on wake-up and
# still gets its fair share of CPU at each tick, much like a client on
# another machine. Native and warm also run once per round with the client
# in the default class, printed as a second table.
#
# Tracing: with nginx installed, the one-plugin server runs twice more with
# OpenTelemetry tracing to an OTLP sink on loopback (nginx answering 200 to
# every export): configured but sampling none, and sampling every request,
# each round right after the same server untraced. Their rows compare with
# it: the median over the rounds of each round's ratio.
#
# Needs wrk (apt-get install wrk); nginx for the tracing rows. Builds in
# release first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. benches/otlp_sink.sh
secs="${1:-6}"
conns="${2:-32}"
rounds="${3:-3}"
command -v wrk >/dev/null || { echo "load.sh: wrk is missing (apt-get install wrk)" >&2; exit 1; }
export RUST_LIB_BACKTRACE=0
# Two builds: a `--bin` filter would apply to every package and skip `buntime`.
cargo build --release -q -p buntime -p buntime-fixtures
cargo build --release -q -p buntime-benches --bin native-hello --bin latency

work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT
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

serve() { # port config [VAR=value ...]
    local port="$1" config="$2"; shift 2
    env "$@" RUNTIME_WORKER_DIRS="$apps" RUNTIME_PLUGIN_DIRS="$plugins" RUNTIME_CONFIG="$config" \
        RUNTIME_CACHE_DIR=off RUNTIME_LOG_LEVEL=warn PORT="$port" target/release/buntime serve >/dev/null &
    servers="${servers:+$servers }$!"
}
servers=""  # PIDs, the 0-plugin server first
serve 18080 "$work/none.jsonc"
serve 18082 "$work/one.jsonc"
serve 18083 "$work/five.jsonc"
target/release/native-hello 18081 &
ports="18080 18081 18082 18083"
tracing=""
if command -v nginx >/dev/null; then
    otlp_sink "$work" 18090
    traced=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:18090 OTEL_TRACES_SAMPLER=parentbased_traceidratio)
    serve 18084 "$work/one.jsonc" "${traced[@]}" OTEL_TRACES_SAMPLER_ARG=1.0
    serve 18085 "$work/one.jsonc" "${traced[@]}" OTEL_TRACES_SAMPLER_ARG=0
    ports="$ports 18084 18085"
    tracing=1
fi
for port in $ports; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/_/api/health/live" >/dev/null 2>&1 && break
        curl -s "http://127.0.0.1:$port/" >/dev/null 2>&1 && [ "$port" = 18081 ] && break; sleep 0.1; done
done

# The client's scheduling class (see the top of this file).
batch=""
if command -v chrt >/dev/null && chrt --batch 0 true 2>/dev/null; then batch="chrt --batch 0"; fi

once() { # name url [connections] [batch|default] -> "rps p50_ms p99_ms"
    local c="${3:-$conns}" class=""
    [ "${4:-batch}" = batch ] && class="$batch"
    $class wrk -t"$(( c < 2 ? 1 : 2 ))" -c"$c" -d"${secs}s" --latency "$2" >"$work/$1.txt"
    awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
        function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
        END { printf "%s %.3f %.3f\n", rps, ms(p50), ms(p99) }' "$work/$1.txt"
}

# name url [connections] [client class]: one per line, run in this order in every round.
scenarios="native http://127.0.0.1:18081/
warm http://127.0.0.1:18080/warm/
ephemeral http://127.0.0.1:18080/ephemeral/
static http://127.0.0.1:18080/site/hello.txt
p0 http://127.0.0.1:18080/warm/
p1 http://127.0.0.1:18082/warm/"
# The traced servers right after the untraced one they are compared with;
# sampling 0 first, so that it does not run while the server sampling
# everything is still exporting what it queued.
if [ -n "$tracing" ]; then
    scenarios="$scenarios
trace0 http://127.0.0.1:18085/warm/
trace1 http://127.0.0.1:18084/warm/"
fi
scenarios="$scenarios
p5 http://127.0.0.1:18083/warm/
native-default http://127.0.0.1:18081/ $conns default
warm-default http://127.0.0.1:18080/warm/ $conns default"
while read -r name url _; do curl -sf "$url" >/dev/null; done <<<"$scenarios" # compile, first instance
pin() { # 1 | all: the buntime servers' threads onto CPU 1, or back onto every CPU
    [ -n "$client" ] || return 0
    local cpus; if [ "$1" = all ]; then cpus="0-$(( $(nproc) - 1 ))"; else cpus=1; fi
    for pid in $servers; do taskset -a -p -c "$cpus" "$pid" >/dev/null; done
}
client=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then client="taskset -c 0"; fi
for round in $(seq "$rounds"); do
    while read -r name url c class; do
        once "$name" "$url" "$c" "$class" >>"$work/$name.rounds"
    done <<<"$scenarios"
    # What the plugins add to one request: one connection per server, the
    # servers taken in turn request by request (benches/src/bin/latency.rs).
    # A one-connection round trip is mostly two thread wake-ups, and where the
    # scheduler happens to place each server's threads moved a server's p50 by
    # ten microseconds; pinned (servers on CPU 1, the client on CPU 0) all
    # three servers wait and wake alike.
    pin 1
    $client target/release/latency 20000 http://127.0.0.1:18080/warm/ http://127.0.0.1:18082/warm/ \
        http://127.0.0.1:18083/warm/ >"$work/latency.$round"
    pin all
    echo "round $round of $rounds done" >&2
done
# The median round of a scenario, by req/s.
median() { # name key_column
    sort -n -k"$2" "$work/$1.rounds" | sed -n "$(( (rounds + 1) / 2 ))p"
}
native=$(median native 1)
warm=$(median warm 1)
ephemeral=$(median ephemeral 1)
static=$(median static 1)

native_rps=$(echo "$native" | cut -d' ' -f1)
echo "$rounds rounds of ${secs} s per scenario, $conns connections; medians; client: ${batch:-default scheduling class (chrt unavailable)}"
printf '%-22s %12s %10s %10s %10s\n' scenario "req/s" "p50 ms" "p99 ms" "vs native"
for row in "native-axum $native" "pdk-warm $warm" "pdk-ephemeral $ephemeral" "static-file $static"; do
    set -- $row
    ratio=$(awk -v a="$2" -v b="$native_rps" 'BEGIN { printf "%.0f%%", 100 * a / b }')
    printf '%-22s %12s %10s %10s %10s\n' "$1" "$2" "$3" "$4" "$ratio"
done

# The same two scenarios with the client in the default scheduling class.
native_default=$(median native-default 1)
warm_default=$(median warm-default 1)
echo
echo "client in the default scheduling class (it preempts the server on wake-up):"
printf '%-22s %12s %10s %10s %10s\n' scenario "req/s" "p50 ms" "p99 ms" "vs native"
base_rps=$(echo "$native_default" | cut -d' ' -f1)
for row in "native-axum $native_default" "pdk-warm $warm_default"; do
    set -- $row
    ratio=$(awk -v a="$2" -v b="$base_rps" 'BEGIN { printf "%.0f%%", 100 * a / b }')
    printf '%-22s %12s %10s %10s %10s\n' "$1" "$2" "$3" "$4" "$ratio"
done

# The plugin chain: the warm hello app through 0, 1 and 5 no-op plugins.
# Throughput at $conns connections, and latency with one connection: the
# p50 difference to the 0-plugin server within a round is what the plugins
# add to a request; the row shows the median round.
p0=$(median p0 1)
p1=$(median p1 1)
p5=$(median p5 1)
p0_rps=$(echo "$p0" | cut -d' ' -f1)
added() { # line of the latency output (2 = one plugin, 3 = five)
    for r in $(seq "$rounds"); do
        awk -v l="$1" 'NR == 1 { base = $2 } NR == l { printf "%.1f\n", $2 - base }' "$work/latency.$r"
    done | sort -n | sed -n "$(( (rounds + 1) / 2 ))p"
}
base_p50=$(for r in $(seq "$rounds"); do awk 'NR == 1 { print $2 }' "$work/latency.$r"; done | sort -n | sed -n "$(( (rounds + 1) / 2 ))p")
echo
printf '%-22s %12s %10s %10s %10s %14s\n' plugins "req/s" "p50 ms" "p99 ms" "vs 0" "c=1 p50 +µs"
for row in "0-plugins $p0 0.0" "1-noop-plugin $p1 $(added 2)" "5-noop-plugins $p5 $(added 3)"; do
    set -- $row
    ratio=$(awk -v a="$2" -v b="$p0_rps" 'BEGIN { printf "%.0f%%", 100 * a / b }')
    printf '%-22s %12s %10s %10s %10s %14s\n' "$1" "$2" "$3" "$4" "$ratio" "$5"
done
echo "c=1, 0 plugins: p50 ${base_p50} µs; every round (URL p50 p90 p99 µs):"
for r in $(seq "$rounds"); do sed 's/^/  /' "$work/latency.$r"; done

# Tracing: the one-plugin server traced, against itself untraced (p1). The
# ratio is the median of each round's (the three run one after another),
# which the machine's drift between rounds does not move as it moves the
# ratio of two medians.
round_ratio() { # name: the median over rounds of its req/s over p1's
    paste -d' ' <(cut -d' ' -f1 "$work/p1.rounds") <(cut -d' ' -f1 "$work/$1.rounds") |
        awk '{ printf "%.2f\n", 100 * $2 / $1 }' | sort -n | sed -n "$(( (rounds + 1) / 2 ))p"
}
if [ -n "$tracing" ]; then
    echo
    printf '%-22s %12s %10s %10s %10s\n' "tracing, 1 plugin" "req/s" "p50 ms" "p99 ms" "vs off"
    for row in "off $p1 100.00" "sampling-1.0 $(median trace1 1) $(round_ratio trace1)" \
        "sampling-0 $(median trace0 1) $(round_ratio trace0)"; do
        set -- $row
        printf '%-22s %12s %10s %10s %9.1f%%\n' "$1" "$2" "$3" "$4" "$5"
    done
    echo "(vs off: the median of the rounds' ratios)"
fi
echo "every round (req/s): $(for n in native warm ephemeral static p0 p1 p5 native-default warm-default ${tracing:+trace1 trace0}; do printf '%s=%s ' "$n" "$(cut -d' ' -f1 "$work/$n.rounds" | paste -sd/)"; done)"

rss=$(ps -o rss= -p "${servers%% *}")
echo "buntime RSS after the run (0-plugin server): $((rss / 1024)) MiB"
