#!/usr/bin/env bash
# What the gateway plugin adds to a request over loopback: the warm hello app
# served by three servers (no gateway; the gateway checking CORS only; the
# gateway drawing one token per request from a limit never reached), the
# request log off in both, every request sent with an allowed `Origin`.
# `latency` takes the servers in turn, request by request, on one connection
# each, so all see the same drift of the machine; a round runs it in both
# cyclic orders and prints each server's mean p50; the medians of the rounds
# give the p50 each check adds (target: at most 5 us each).
#
#   benches/gateway.sh [rounds, default 3] [requests per server and round, default 20000]
#
# BASELINE=/path/to/other/buntime adds that build's three servers, measured
# in each round right after the current build's (three servers at a time, as
# without it: every server taken in turn evicts the others' caches, so more
# of them would raise every figure).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds="${1:-3}"
requests="${2:-20000}"
export RUST_LIB_BACKTRACE=0
cargo build --release -q -p buntime -p buntime-fixtures -p buntime-benches --bin buntime --bin latency

work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/apps/warm/1.0.0"
cp target/wasm-guests/wasm32-unknown-unknown/release/app_hello.wasm "$work/apps/warm/1.0.0/app.wasm"
echo '{ ttl: "10m", maxConcurrency: 64, maxRequests: 0 }' >"$work/apps/warm/1.0.0/worker.jsonc"
origin="https://app.example.com"
gateway='"@buntime/plugin-gateway"'
echo '{ plugins: [] }' >"$work/off.jsonc"
echo "{ plugins: [[$gateway, { \"requestLog\": null, \"cors\": { \"origins\": [\"$origin\"], \"credentials\": true } }]] }" >"$work/cors.jsonc"
echo "{ plugins: [[$gateway, { \"requestLog\": null, \"rateLimit\": { \"requests\": 1000000000, \"window\": \"1h\" } }]] }" >"$work/rate.jsonc"

names=() urls=()
port=18840
serve() { # label binary
    for config in off cors rate; do
        RUNTIME_WORKER_DIRS="$work/apps" RUNTIME_CONFIG="$work/$config.jsonc" RUNTIME_DATA_DIR="$work/data-$1-$config" \
            RUNTIME_CACHE_DIR=off RUNTIME_LOG_LEVEL=error PORT="$port" "$2" serve >"$work/$1-$config.log" 2>&1 &
        names+=("$1-$config") urls+=("http://127.0.0.1:$port/warm/")
        port=$((port + 1))
    done
}
serve current target/release/buntime
[ -n "${BASELINE:-}" ] && serve baseline "$BASELINE"
for url in "${urls[@]}"; do
    for _ in $(seq 600); do curl -sf -o /dev/null "$url" && break; sleep 0.1; done
    curl -sf -o /dev/null -H "origin: $origin" "$url"
done

labels=(current)
[ -n "${BASELINE:-}" ] && labels+=(baseline)
for r in $(seq "$rounds"); do
    for i in "${!labels[@]}"; do
        # Both cyclic orders (no gateway, CORS, rate limit, and no gateway,
        # rate limit, CORS), so each server follows each other once: on this
        # machine the server taken right after the one without the gateway
        # reads tens of us slower, whichever it is, and a fixed order would
        # charge that to one check. A server's p50 in the round is the mean
        # of the two.
        set=("${urls[@]:$((i * 3)):3}")
        : >"$work/orders"
        for order in "0 1 2" "0 2 1"; do
            read -r a b c <<<"$order"
            target/release/latency "$requests" -H "origin: $origin" "${set[$a]}" "${set[$b]}" "${set[$c]}" |
                awk -v order="$order" 'BEGIN { split(order, o, " ") } { print o[NR], $2 }' >>"$work/orders"
        done
        sort -n "$work/orders" | awk '{ sum[$1] += $2; n[$1]++ } END { for (s = 0; s < 3; s++) printf "server%d %.1f\n", s, sum[s] / n[s] }' >"$work/${labels[$i]}.$r"
        echo "round $r, ${labels[$i]} (p50 us): $(awk '{ printf "%s%s", sep, $2; sep = " " }' "$work/${labels[$i]}.$r") (no gateway, CORS, rate limit)"
    done
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
added() { # label, line of the check (line 1: no gateway)
    for r in $(seq "$rounds"); do
        awk -v b="$2" 'NR == 1 { base = $2 } NR == b { print $2 - base }' "$work/$1.$r"
    done | median
}
echo "p50 added (median of $rounds rounds; target <= 5 us):"
for label in "${labels[@]}"; do
    printf '  %-9s CORS %s us, rate limit %s us\n' "$label:" "$(added "$label" 2)" "$(added "$label" 3)"
done
