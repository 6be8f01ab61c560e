# syntax=docker/dockerfile:1.7
#
# Buntime's image: a builder with the toolchain pinned in rust-toolchain.toml, its
# wasm targets and the guest toolchains (clang/lld for C, node/npm for
# AssemblyScript), and a slim runtime image that runs the one binary as a non-root
# user. The builder runs `./x setup` and `./x build`, the commands CI runs
# (deploy/tests/test_dockerfile.py holds them equal).
#
#   docker build -t buntime .
#   docker run -p 8000:8000 -v "$PWD/apps:/var/lib/buntime/apps" buntime
#
# docs/deployment.md describes the layout, the volumes and the settings.

FROM rust:1.96.0-slim-bookworm AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
# The toolchains first, so a source change does not reinstall them.
COPY x rust-toolchain.toml ./
COPY fixtures/assemblyscript/package.json fixtures/assemblyscript/package-lock.json fixtures/assemblyscript/
RUN ./x setup
COPY . .
# The binary, built with the `production` profile (fat LTO, one codegen unit: a
# longer build for a faster server), and the demo apps (their module built from
# fixtures/), copied out of the cached target dir; the volume dirs made here with
# their owner, since the runtime image has no shell to make them.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    BUNTIME_PROFILE=production ./x build \
    && mkdir -p /out/bin /out/share/buntime /out/var/lib/buntime/apps /out/var/lib/buntime/plugins \
        /out/var/lib/buntime/data /out/var/cache/buntime \
    && cp target/production/buntime /out/bin/buntime \
    && cp -r target/demo/apps /out/share/buntime/demo \
    && chmod 0700 /out/var/cache/buntime

# glibc and libgcc, no shell, no package manager; user `nonroot` (65532).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="buntime" \
      org.opencontainers.image.description="A serverless WASM application runtime with sandboxed plugins"
COPY --from=builder /out/bin/buntime /usr/local/bin/buntime
COPY --from=builder /out/share/buntime /usr/share/buntime
COPY --from=builder --chown=65532:65532 /out/var/lib/buntime /var/lib/buntime
COPY --from=builder --chown=65532:65532 /out/var/cache/buntime /var/cache/buntime
ENV PORT=8000 \
    RUNTIME_HOST=0.0.0.0 \
    RUNTIME_ENV=production \
    RUNTIME_WORKER_DIRS=/var/lib/buntime/apps \
    RUNTIME_PLUGIN_DIRS=/var/lib/buntime/plugins \
    RUNTIME_DATA_DIR=/var/lib/buntime/data \
    RUNTIME_CACHE_DIR=/var/cache/buntime
WORKDIR /var/lib/buntime
USER 65532:65532
VOLUME ["/var/lib/buntime/apps", "/var/lib/buntime/plugins", "/var/lib/buntime/data", "/var/cache/buntime"]
EXPOSE 8000
# `buntime health` probes the server on PORT itself: no shell, curl or wget needed.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/buntime", "health", "--ready"]
ENTRYPOINT ["/usr/local/bin/buntime"]
CMD ["serve"]
