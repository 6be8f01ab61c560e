#!/usr/bin/env bash
# Runs the fuzz targets for a bounded time each and reports, per target, the
# executions, the corpus size and the crashes (libFuzzer stops a target at
# its first crash and writes the input to fuzz/artifacts/<target>/).
#
#   fuzz/run.sh [SECONDS] [TARGET...]   SECONDS per target (600); all targets by default
#   JOBS=2 fuzz/run.sh 600              run two targets at a time
#
# Needs a nightly toolchain and cargo-fuzz (installed here when missing).
# Not part of CI: docs/security.md ("Fuzzing") keeps the latest figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config semver static_path keyval guest_output rewrite)
jobs="${JOBS:-1}"

rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# `-s none`: no sanitizer. The code fuzzed here has no `unsafe` of its own
# (the arena's raw view is not on these paths); wasmtime's is fuzzed under
# the sanitizers by its own project.
cargo +nightly fuzz build -s none
bin="target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"

mkdir -p logs
run_one() {
    local target="$1" seeds=() options=()
    # The differential target runs ~100 inputs a second: let its inputs be
    # long from the start (libFuzzer otherwise grows them slowly).
    [ "$target" = rewrite ] && options=(-len_control=0)
    mkdir -p "corpus/$target"
    rm -rf "artifacts/$target"
    [ -d "seeds/$target" ] && seeds=("seeds/$target")
    mkdir -p "artifacts/$target"
    # The binary built above, not `cargo fuzz run`: that would rebuild from
    # whatever the sources are when this target's turn comes.
    "$bin/$target" -artifact_prefix="artifacts/$target/" \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=4096 "${options[@]}" \
        "corpus/$target" "${seeds[@]}" >"logs/$target.log" 2>&1 || true
}
running=0
for target in "${targets[@]}"; do
    run_one "$target" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

printf '%-14s %8s %12s %8s %8s %s\n' target seconds executions exec/s corpus crashes
status=0
for target in "${targets[@]}"; do
    log="logs/$target.log"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    corpus=$(find "corpus/$target" -type f | wc -l)
    crashes=$(find "artifacts/$target" -type f 2>/dev/null | wc -l)
    [ -n "$secs" ] || secs="$seconds?"
    rate=$([ -n "$runs" ] && [ "${secs%\?}" -gt 0 ] 2>/dev/null && echo $((runs / ${secs%\?})) || echo "-")
    printf '%-14s %8s %12s %8s %8s %s\n' "$target" "$secs" "${runs:-?}" "$rate" "$corpus" "$crashes"
    if [ "$crashes" -gt 0 ] || [ -z "$runs" ]; then
        status=1
        echo "  see fuzz/$log and fuzz/artifacts/$target/" >&2
    fi
done
exit "$status"
