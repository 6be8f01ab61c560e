# Sourced by ab.sh and ab_instructions.sh: lays out, under the directory $1,
# what both compare two builds on: the warm hello app (`apps/warm`), five
# no-op plugins (`plugins/noop1..5`), and two server configs, `none.jsonc`
# (no plugin) and `five.jsonc` (the five in front of the app). The core logs
# and metrics plugins are off in both: the comparison is of the request
# path, and an older binary may not have them. Needs the release guests:
# `cargo build --release -p buntime-fixtures`.
ab_layout() {
    local work="$1" guests=target/wasm-guests/wasm32-unknown-unknown/release
    mkdir -p "$work/apps/warm/1.0.0"
    cp "$guests/app_hello.wasm" "$work/apps/warm/1.0.0/app.wasm"
    echo '{ ttl: "10m", maxConcurrency: 64, maxRequests: 0 }' >"$work/apps/warm/1.0.0/worker.jsonc"
    for i in 1 2 3 4 5; do
        mkdir -p "$work/plugins/noop$i"
        cp "$guests/plugin_noop.wasm" "$work/plugins/noop$i/plugin.wasm"
        echo "{ \"name\": \"noop$i\", \"version\": \"1.0.0\" }" >"$work/plugins/noop$i/manifest.jsonc"
    done
    local core_off='{ name: "@buntime/plugin-logs", enabled: false }, { name: "@buntime/plugin-metrics", enabled: false }'
    echo "{ plugins: [$core_off] }" >"$work/none.jsonc"
    echo "{ plugins: [\"noop1\", \"noop2\", \"noop3\", \"noop4\", \"noop5\", $core_off] }" >"$work/five.jsonc"
}
