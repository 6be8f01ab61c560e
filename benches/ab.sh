#!/usr/bin/env bash
# A/B load comparison of two `buntime` binaries (for example a change and the
# commit before it) under the same load, in the same run: the warm hello app
# with no plugin and through five no-op plugins. Prints req/s and the
# server's CPU per request (utime + stime over the requests wrk completed,
# steadier than req/s on a shared machine) per round, and the median ratios
# B/A per scenario.
#
#   benches/ab.sh A_BINARY B_BINARY [seconds per scenario, default 5] [rounds, default 5]
#
# Both servers run at once on their own ports, and every round measures both
# for each scenario (alternating which goes first), so the machine's drift reaches both alike (see
# load.sh). wrk runs in the SCHED_BATCH class when the machine allows it.
# Needs wrk, and the release guests: `cargo build --release -p buntime-fixtures`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
a="${1:?usage: benches/ab.sh A_BINARY B_BINARY [secs] [rounds]}"
b="${2:?usage: benches/ab.sh A_BINARY B_BINARY [secs] [rounds]}"
secs="${3:-5}"
rounds="${4:-5}"
command -v wrk >/dev/null || { echo "ab.sh: wrk is missing (apt-get install wrk)" >&2; exit 1; }
export RUST_LIB_BACKTRACE=0

work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
. benches/ab_layout.sh
ab_layout "$work"

serve() { # binary port config
    RUNTIME_WORKER_DIRS="$work/apps" RUNTIME_PLUGIN_DIRS="$work/plugins" RUNTIME_CONFIG="$3" \
        RUNTIME_DATA_DIR="$work/data-$2" RUNTIME_CACHE_DIR=off RUNTIME_LOG_LEVEL=warn PORT="$2" \
        "$1" serve >/dev/null &
}
declare -A pid
serve "$a" 18201 "$work/none.jsonc"
pid[18201]=$!
serve "$b" 18202 "$work/none.jsonc"
pid[18202]=$!
serve "$a" 18203 "$work/five.jsonc"
pid[18203]=$!
serve "$b" 18204 "$work/five.jsonc"
pid[18204]=$!
hz=$(getconf CLK_TCK)
for port in 18201 18202 18203 18204; do
    for _ in $(seq 300); do
        curl -fsS "http://127.0.0.1:$port/warm/" >/dev/null 2>&1 && break
        sleep 0.1
    done
done

batch=""
if chrt --batch 0 true 2>/dev/null; then batch="chrt --batch 0"; fi
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rps() { # port -> "req/s cpu_us_per_request"
    local before after
    before=$(ticks "${pid[$1]}")
    $batch wrk -t2 -c32 -d"${secs}s" "http://127.0.0.1:$1/warm/" >"$work/wrk.out"
    after=$(ticks "${pid[$1]}")
    awk -v t=$((after - before)) -v hz="$hz" '
        /Requests\/sec/ { r = int($2) } /requests in/ { n = $1 }
        END { printf "%d %.2f\n", r, t * 1e6 / hz / n }' "$work/wrk.out"
}
for round in $(seq "$rounds"); do
    for scenario in "warm 18201 18202" "five-plugins 18203 18204"; do
        set -- $scenario
        # Which binary goes first alternates, so neither always gets the
        # cooler (or warmer) half of a round.
        if [ $((round % 2)) -eq 1 ]; then
            ra=$(rps "$2")
            rb=$(rps "$3")
        else
            rb=$(rps "$3")
            ra=$(rps "$2")
        fi
        # scenario, A req/s, A cpu, B req/s, B cpu
        echo "$1 $ra $rb" | tee -a "$work/rounds"
    done
done
echo
mid=$(((rounds + 1) / 2))
printf '%-14s %10s %10s %8s %12s %12s %8s\n' scenario "A req/s" "B req/s" "B/A" "A us/req" "B us/req" "B/A"
for s in warm five-plugins; do
    # Each ratio is the median of the per-round ratios (the rounds drift).
    rr=$(awk -v s="$s" '$1 == s { printf "%.3f\n", $4 / $2 }' "$work/rounds" | sort -g | sed -n "${mid}p")
    cr=$(awk -v s="$s" '$1 == s { printf "%.3f\n", $5 / $3 }' "$work/rounds" | sort -g | sed -n "${mid}p")
    read -r ar br <<<"$(awk -v s="$s" '$1 == s { print $2, $4 }' "$work/rounds" | sort -n | sed -n "${mid}p")"
    read -r ac bc <<<"$(awk -v s="$s" '$1 == s { print $3, $5 }' "$work/rounds" | sort -g | sed -n "${mid}p")"
    printf '%-14s %10s %10s %8s %12s %12s %8s\n' "$s" "$ar" "$br" "$rr" "$ac" "$bc" "$cr"
done
