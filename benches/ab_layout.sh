# Sourced by ab.sh and ab_instructions.sh: lays out, under the directory $1,
# what both compare two builds on: the warm hello app (`apps/warm`), five
# no-op plugins (`plugins/noop1..5`), and the server configs `none.jsonc`
# (no plugin), `one.jsonc` (noop1 in front of the app), `five.jsonc` (the
# five), `cors.jsonc` and
# `rate.jsonc` (the gateway checking CORS for `https://app.example.com`, or
# drawing from a limit never reached; its request log off) and, when $2
# gives an upstream's port, `proxy.jsonc` (the proxy plugin forwarding
# `/up/*` there). The core logs and metrics plugins are off in all: the
# comparison is of the request path, and an older binary may not have them.
# Needs the release guests: `cargo build --release -p buntime-fixtures`.
ab_layout() {
    local work="$1" upstream="${2:-}" guests=target/wasm-guests/wasm32-unknown-unknown/release
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
    echo "{ plugins: [\"noop1\", $core_off] }" >"$work/one.jsonc"
    echo "{ plugins: [\"noop1\", \"noop2\", \"noop3\", \"noop4\", \"noop5\", $core_off] }" >"$work/five.jsonc"
    local gateway='"@buntime/plugin-gateway"'
    echo "{ plugins: [[$gateway, { requestLog: null, cors: { origins: [\"https://app.example.com\"], credentials: true } }], $core_off] }" >"$work/cors.jsonc"
    echo "{ plugins: [[$gateway, { requestLog: null, rateLimit: { requests: 1000000000, window: \"1h\" } }], $core_off] }" >"$work/rate.jsonc"
    if [ -n "$upstream" ]; then
        echo "{ plugins: [[\"@buntime/plugin-proxy\", { rules: [{ pattern: \"^/up/(.*)\$\", target: \"http://127.0.0.1:$upstream/\$1\", public: true }] }], $core_off] }" >"$work/proxy.jsonc"
    fi
}
