#!/usr/bin/env bash
# Instructions per request of two `buntime` binaries, counted by callgrind:
# the warm hello app with no plugin and through five no-op plugins, the same
# setup as ab.sh, and on request the app behind the gateway's CORS check or
# rate limit, or the proxy plugin forwarding to `native-hello`. Instruction counts do not drift with the machine's load (a
# binary measured twice agrees within about 0.2 %), so small differences in
# user-space work show here that req/s on a shared machine cannot resolve.
# They leave out the kernel's share (about half of a request's CPU here) and
# contention between threads: confirm a change with ab.sh.
#
#   benches/ab_instructions.sh A_BINARY B_BINARY [requests, default 2000]
#   SCENARIOS="warm five cors rate proxy one traced unsampled" benches/ab_instructions.sh A B
#
# `SCENARIOS` (default `warm five`): `warm` (no plugin), `five` (five no-op
# plugins), `cors` and `rate` (the gateway; every request with an allowed
# `Origin`), `proxy` (one proxy rule; the upstream's own work is not
# counted, it runs natively), `one` (one no-op plugin) and `traced` (the
# same, every request traced and exported over OTLP/HTTP to an nginx sink
# on loopback, as in trace_cpu.sh: `one` and `traced` side by side are
# tracing's cost in instructions) and `unsampled` (the same, tracing
# configured but sampling none).
#
# Each server first runs natively to fill a module cache of its own (compiling
# under valgrind would take minutes), then under callgrind with
# instrumentation off until 300 warm-up requests are done; the counted
# requests come from 4 keep-alive connections. Under valgrind the pooling
# allocator does not fit the address space and wasmtime allocates on demand,
# on both sides alike. `DIFF=1` prints the functions whose counts moved most;
# `DUMPS=<dir>` keeps the callgrind files there (`a-<scenario>.dump`, for
# `callgrind_annotate --inclusive=yes` and the like).
# Needs valgrind and python3, and the release guests:
# `cargo build --release -p buntime-fixtures` (and for `proxy`,
# `cargo build --release -p buntime-benches --bin native-hello`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
a="${1:?usage: benches/ab_instructions.sh A_BINARY B_BINARY [requests]}"
b="${2:?usage: benches/ab_instructions.sh A_BINARY B_BINARY [requests]}"
n="${3:-2000}"
scenarios="${SCENARIOS:-warm five}"
command -v valgrind >/dev/null || { echo "ab_instructions.sh: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
export RUST_LIB_BACKTRACE=0

work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
upstream=""
if [[ " $scenarios " == *" traced "* || " $scenarios " == *" unsampled "* ]]; then
    command -v nginx >/dev/null || { echo "ab_instructions.sh: nginx is missing for \`traced\` and \`unsampled\` (apt-get install nginx)" >&2; exit 1; }
    . benches/otlp_sink.sh
    sink=$((18700 + RANDOM % 100))
    otlp_sink "$work" "$sink"
    trap 'kill $(jobs -p) 2>/dev/null || true; kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; rm -rf "$work"' EXIT
fi
if [[ " $scenarios " == *" proxy "* ]]; then
    upstream=$((18800 + RANDOM % 100))
    target/release/native-hello "$upstream" &
fi
. benches/ab_layout.sh
ab_layout "$work" "$upstream"

# N GETs of PATH over C keep-alive connections, in turn, with the headers
# given as further `name: value` arguments.
cat >"$work/client.py" <<'EOF'
import http.client, sys
port, n, c, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
headers = dict(h.split(": ", 1) for h in sys.argv[5:])
conns = [http.client.HTTPConnection("127.0.0.1", port) for _ in range(c)]
for i in range(n):
    conn = conns[i % c]
    conn.request("GET", path, headers=headers)
    res = conn.getresponse()
    res.read()
    if res.status != 200:
        sys.exit(f"GET {path} answered {res.status}")
EOF

# What each scenario requests: its config file, path and headers.
config_of() { case "$1" in warm) echo none ;; traced | unsampled) echo one ;; *) echo "$1" ;; esac; }
# The server's further environment.
env_of() {
    case "$1" in
        traced) echo "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink OTEL_TRACES_SAMPLER=always_on" ;;
        unsampled) echo "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0" ;;
    esac
}
path_of() { case "$1" in proxy) echo /up/x ;; *) echo /warm/ ;; esac; }
headers_of() { case "$1" in cors) echo "Origin: https://app.example.com" ;; esac; }

wait_up() { # port path
    for _ in $(seq 3000); do
        curl -fsS "http://127.0.0.1:$1$2" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "ab_instructions.sh: the server on port $1 did not come up" >&2
    exit 1
}

count() { # binary scenario label -> instructions per request
    local bin="$1" scenario="$2" label="$3" port=$((18400 + RANDOM % 400))
    local path header extra
    path=$(path_of "$scenario")
    extra=$(env_of "$scenario")
    header=$(headers_of "$scenario")
    export RUNTIME_WORKER_DIRS="$work/apps" RUNTIME_PLUGIN_DIRS="$work/plugins" \
        RUNTIME_CONFIG="$work/$(config_of "$scenario").jsonc" RUNTIME_DATA_DIR="$work/data-$label" \
        RUNTIME_CACHE_DIR="$work/cache-$label" RUNTIME_LOG_LEVEL=warn PORT="$port"
    env $extra "$bin" serve >/dev/null 2>&1 &
    local pid=$!
    wait_up "$port" "$path"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    env $extra valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/$label-$scenario.out" \
        "$bin" serve >/dev/null 2>"$work/valgrind.log" &
    pid=$!
    wait_up "$port" "$path"
    python3 "$work/client.py" "$port" 300 4 "$path" ${header:+"$header"}
    callgrind_control -i on "$pid" >/dev/null 2>&1
    python3 "$work/client.py" "$port" "$n" 4 "$path" ${header:+"$header"}
    callgrind_control -i off "$pid" >/dev/null 2>&1
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    # The dump on request is the largest file (the one at exit counts nothing).
    local dump
    dump=$(ls -S "$work/$label-$scenario.out"* | head -1)
    mv "$dump" "$work/$label-$scenario.dump"
    if [ -n "${DUMPS:-}" ]; then
        mkdir -p "$DUMPS"
        cp "$work/$label-$scenario.dump" "$DUMPS/"
    fi
    callgrind_annotate "$work/$label-$scenario.dump" 2>/dev/null |
        awk -v n="$n" '/PROGRAM TOTALS/ { gsub(",", "", $1); printf "%d\n", $1 / n }'
}

printf '%-14s %12s %12s %8s\n' scenario "A instr/req" "B instr/req" "B/A"
for scenario in $scenarios; do
    case "$scenario" in
        warm | five | cors | rate | proxy | one | traced | unsampled) ;;
        *) echo "ab_instructions.sh: unknown scenario \`$scenario\` in SCENARIOS (warm five cors rate proxy one traced unsampled)" >&2; exit 1 ;;
    esac
    ia=$(count "$a" "$scenario" a)
    ib=$(count "$b" "$scenario" b)
    printf '%-14s %12s %12s %8s\n' "$scenario" "$ia" "$ib" "$(awk -v a="$ia" -v b="$ib" 'BEGIN { printf "%.3f", b / a }')"
    if [ -n "${DIFF:-}" ]; then
        # Exclusive counts per request by function, B - A, largest moves first.
        python3 - "$work/a-$scenario.dump" "$work/b-$scenario.dump" "$n" <<'EOF'
import collections, re, subprocess, sys
def per_function(dump, n):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", dump],
                         capture_output=True, text=True).stdout
    counts = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([\s\d.]+%\)\s+(.*)$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        name = re.sub(r" \[[^\]]*\]$", "", m.group(2))
        name = "<guest code>" if name.startswith("???:0x") else name.split(":", 1)[-1]
        counts[name] += int(m.group(1).replace(",", "")) / n
    return counts
n = float(sys.argv[3])
a, b = per_function(sys.argv[1], n), per_function(sys.argv[2], n)
for f in sorted(set(a) | set(b), key=lambda f: -abs(b[f] - a[f]))[:25]:
    print(f"{b[f] - a[f]:+8.0f} {a[f]:8.0f} {b[f]:8.0f}  {f[:110]}")
EOF
        echo
    fi
done
