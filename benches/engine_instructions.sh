#!/usr/bin/env bash
# Instructions per iteration of the engine bench's Buntime cases, for two
# builds of `benches/benches/engine.rs`, counted by callgrind. Timings of
# sub-microsecond calls move by tens of percent between runs on a shared
# machine; these counts repeat exactly (each case's count over N iterations
# grows by the same amount per iteration).
#
#   benches/engine_instructions.sh A_ENGINE_BENCH B_ENGINE_BENCH [iterations, default 2000]
#
# A bench binary is what `cargo bench -p buntime-benches --bench engine
# --no-run` prints (`target/release/deps/engine-<hash>`); build the other
# side in a worktree with a target dir of its own. Each case runs 100 times
# to warm, then N times in `counted`, the only function callgrind collects
# in. Counts leave out what the kernel does and how the caches behave:
# confirm a change with `./x bench --bench engine`. Needs valgrind.
set -euo pipefail
a="$(realpath "${1:?usage: benches/engine_instructions.sh A_ENGINE_BENCH B_ENGINE_BENCH [iterations]}")"
b="$(realpath "${2:?usage: benches/engine_instructions.sh A_ENGINE_BENCH B_ENGINE_BENCH [iterations]}")"
# Where `cargo bench` runs it.
cd "$(dirname "${BASH_SOURCE[0]}")"
n="${3:-2000}"
command -v valgrind >/dev/null || { echo "engine_instructions.sh: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
export RUST_LIB_BACKTRACE=0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

count() { # binary case -> instructions per iteration
    if ! ENGINE_COUNT="$2:$n" valgrind --tool=callgrind --toggle-collect='engine::counted*' \
        --callgrind-out-file="$work/out" "$1" >"$work/log" 2>&1; then
        echo "engine_instructions.sh: $1 failed on $2:" >&2
        tail -5 "$work/log" >&2
        exit 1
    fi
    awk -v n="$n" '/Collected :/ { printf "%d\n", $4 / n }' "$work/log"
}

printf '%-26s %12s %12s %8s\n' case "A instr/it" "B instr/it" "B/A"
for case in call_noop echo_1k_json host_fn_roundtrip echo_1k_json_buntime_pdk instantiate instantiate_only; do
    ia=$(count "$a" "$case")
    ib=$(count "$b" "$case")
    printf '%-26s %12s %12s %8s\n' "$case" "$ia" "$ib" "$(awk -v a="$ia" -v b="$ib" 'BEGIN { printf "%.3f", b / a }')"
done
