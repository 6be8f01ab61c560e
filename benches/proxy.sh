#!/usr/bin/env bash
# Reverse proxy next to nginx: one upstream (`native-hello`, a plain axum
# handler) reached directly, through Buntime's proxy plugin, through nginx
# with an equivalent `proxy_pass` (HTTP/1.1 to the upstream, kept-alive
# connections, no access log, and the per-request work Buntime does: a
# request id taken from the client or made, sent up and answered;
# X-Forwarded-For/-Host/-Proto and Forwarded; connect and read timeouts),
# through nginx with a bare `proxy_pass` (X-Forwarded-For only), and
# through `native-proxy` (the same stack
# as Buntime, tokio and hyper, forwarding and nothing else: the floor a
# proxy on that stack starts from), all in one run. Prints req/s, p50 and
# p99 per path (the median round), the CPU each request cost the server it
# went through (utime + stime over the requests wrk completed: the upstream
# for the direct path, else the proxy alone), and Buntime's ratios to nginx
# (the median of the rounds' ratios).
#
#   benches/proxy.sh [seconds per scenario, default 5] [rounds, default 3]
#
# BASELINE=/path/to/other/buntime adds that build as a fourth path, measured
# in every round next to the others (a before/after comparison the
# machine's drift reaches alike).
#
# Buntime, the floor and the upstream are built with the `production`
# profile, the one the image ships (fat LTO, one codegen unit; a clean
# build takes about 14 minutes on 2 cores, an incremental one about 7);
# PROFILE=release measures the everyday build instead.
#
# Needs wrk and nginx (Debian: `apt-get install wrk nginx`). Targets: Buntime
# at least 80 % of nginx's req/s, and its p99 within 1.5 times nginx's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs="${1:-5}"
rounds="${2:-3}"
for tool in wrk nginx; do
    command -v "$tool" >/dev/null || { echo "proxy.sh: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
export RUST_LIB_BACKTRACE=0
profile="${PROFILE:-production}"
cargo build --profile "$profile" -q -p buntime -p buntime-benches --bin buntime --bin native-hello --bin native-proxy
bin="target/$profile"

work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT
up=18301 bun=18302 ngx=18303 base=18304 floor=18305 ngx_bare=18306

"$bin/native-hello" "$up" &
up_pid=$!
"$bin/native-proxy" "$floor" "$up" &
floor_pid=$!

mkdir -p "$work/apps" "$work/plugins"
cat >"$work/buntime.jsonc" <<EOF
{ "plugins": [["@buntime/plugin-proxy", { "rules": [
    { "pattern": "^/up/(.*)\$", "target": "http://127.0.0.1:$up/\$1", "public": true }
] }]] }
EOF
serve() { # binary port
    RUNTIME_WORKER_DIRS="$work/apps" RUNTIME_PLUGIN_DIRS="$work/plugins" RUNTIME_CONFIG="$work/buntime.jsonc" \
        RUNTIME_DATA_DIR="$work/data-$2" RUNTIME_CACHE_DIR=off RUNTIME_LOG_LEVEL=warn PORT="$2" \
        "$1" serve >/dev/null &
}
serve "$bin/buntime" "$bun"
bun_pid=$!
paths=(direct buntime nginx nginx-bare floor)
if [ -n "${BASELINE:-}" ]; then
    serve "$BASELINE" "$base"
    base_pid=$!
    paths+=(baseline)
fi

# nginx with as many workers as Buntime has tokio workers (one per core).
cat >"$work/nginx.conf" <<EOF
worker_processes $(nproc);
pid $work/nginx.pid;
error_log $work/nginx.error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    upstream hello { server 127.0.0.1:$up; keepalive 64; }
    # Buntime keeps a client's x-request-id (when sane) or makes one.
    map \$http_x_request_id \$buntime_request_id {
        default \$http_x_request_id;
        "" \$request_id;
    }
    # What Buntime does to every proxied request and its answer.
    server {
        listen 127.0.0.1:$ngx;
        location /up/ {
            proxy_pass http://hello/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Request-Id \$buntime_request_id;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header Forwarded "for=\$remote_addr;proto=\$scheme;host=\\"\$http_host\\"";
            add_header X-Request-Id \$buntime_request_id always;
            proxy_connect_timeout 5s;
            proxy_read_timeout 30s;
        }
    }
    # A bare proxy_pass.
    server {
        listen 127.0.0.1:$ngx_bare;
        location /up/ {
            proxy_pass http://hello/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
    }
}
EOF
nginx -p "$work" -c "$work/nginx.conf"

urls=("http://127.0.0.1:$up/x" "http://127.0.0.1:$bun/up/x" "http://127.0.0.1:$ngx/up/x" "http://127.0.0.1:$ngx_bare/up/x" "http://127.0.0.1:$floor/up/x")
[ -n "${BASELINE:-}" ] && urls+=("http://127.0.0.1:$base/up/x")
for url in "${urls[@]}"; do
    for _ in $(seq 300); do
        [ "$(curl -fsS "$url" 2>/dev/null)" = hello ] && break
        sleep 0.1
    done
    [ "$(curl -fsS "$url")" = hello ] || { echo "proxy.sh: $url does not answer hello" >&2; exit 1; }
done

batch=""
if chrt --batch 0 true 2>/dev/null; then batch="chrt --batch 0"; fi
# nginx's workers (its master only waits).
ngx_pids=$(pgrep -P "$(cat "$work/nginx.pid")" | paste -sd' ')
cpu_ticks() { # pids... -> their utime + stime, in clock ticks
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
    echo "$t"
}
hz=$(getconf CLK_TCK)
measure() { # name url pids... -> "req/s p50_ms p99_ms cpu_us_per_request"
    local name="$1" url="$2"
    shift 2
    local before after
    before=$(cpu_ticks "$@")
    $batch wrk -t2 -c32 -d"${secs}s" --latency "$url" >"$work/wrk.out"
    after=$(cpu_ticks "$@")
    awk -v ticks=$((after - before)) -v hz="$hz" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = int($2) }
        /requests in/ { n = $1 }
        $1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 }
        END { printf "%s %.3f %.3f %.1f\n", rps, ms(p50), ms(p99), ticks * 1e6 / hz / n }' \
        "$work/wrk.out" >>"$work/$name.rounds"
}
for round in $(seq "$rounds"); do
    measure direct "http://127.0.0.1:$up/x" "$up_pid"
    measure buntime "http://127.0.0.1:$bun/up/x" "$bun_pid"
    # shellcheck disable=SC2086 # one pid per worker
    measure nginx "http://127.0.0.1:$ngx/up/x" $ngx_pids
    # shellcheck disable=SC2086
    measure nginx-bare "http://127.0.0.1:$ngx_bare/up/x" $ngx_pids
    measure floor "http://127.0.0.1:$floor/up/x" "$floor_pid"
    if [ -n "${BASELINE:-}" ]; then
        measure baseline "http://127.0.0.1:$base/up/x" "$base_pid"
    fi
    echo "round $round of $rounds done" >&2
done
median() { sort -n -k1 "$work/$1.rounds" | sed -n "$(( (rounds + 1) / 2 ))p"; }
printf '%-10s %10s %10s %10s %14s\n' path "req/s" "p50 ms" "p99 ms" "server us/req"
for n in "${paths[@]}"; do
    read -r rps p50 p99 cpu <<<"$(median "$n")"
    printf '%-10s %10s %10s %10s %14s\n' "$n" "$rps" "$p50" "$p99" "$cpu"
done
# Buntime against each nginx: the median of the per-round ratios, so that
# the machine's drift between rounds cancels out (as for the baseline).
mid=$(((rounds + 1) / 2))
ratio() { # a b column -> median over the rounds of a/b in that column
    paste -d' ' "$work/$1.rounds" "$work/$2.rounds" |
        awk -v c="$3" '{ printf "%.4f\n", $c / $(c + 4) }' | sort -g | sed -n "${mid}p"
}
awk -v r="$(ratio buntime nginx 1)" -v p="$(ratio buntime nginx 3)" -v rb="$(ratio buntime nginx-bare 1)" \
    -v f="$(ratio floor nginx 1)" 'BEGIN {
    printf "buntime / nginx: req/s %.0f %% (target >= 80 %%), p99 %.2fx (target <= 1.5x)\n", 100 * r, p
    printf "buntime / nginx-bare: req/s %.0f %%\n", 100 * rb
    printf "floor / nginx: req/s %.0f %%\n", 100 * f }'
echo "every round (req/s): $(for n in "${paths[@]}"; do printf '%s=%s ' "$n" "$(cut -d' ' -f1 "$work/$n.rounds" | paste -sd/)"; done)"
echo "every round (server us/req): $(for n in "${paths[@]}"; do printf '%s=%s ' "$n" "$(cut -d' ' -f4 "$work/$n.rounds" | paste -sd/)"; done)"
if [ -n "${BASELINE:-}" ]; then
    # Per round, so that the machine's drift between rounds cancels out.
    paste -d' ' "$work/buntime.rounds" "$work/baseline.rounds" |
        awk '{ printf "%.3f %.3f\n", $1 / $5, $4 / $8 }' >"$work/ratios"
    printf 'buntime / baseline (median of the rounds): req/s %s, server us/req %s\n' \
        "$(cut -d' ' -f1 "$work/ratios" | sort -g | sed -n "${mid}p")" \
        "$(cut -d' ' -f2 "$work/ratios" | sort -g | sed -n "${mid}p")"
fi
