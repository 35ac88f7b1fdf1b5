# syntax=docker/dockerfile:1
#
# repricer container image: a static-ish Rust binary on distroless (glibc + libgcc only,
# no shell, no package manager), running as the non-root user 65532.
#
#   docker build -t repricer:0.1.0 .
#   docker run --rm -p 8080:8080 -p 9102:9102 -v repricer-data:/data repricer:0.1.0
#   docker run --rm -v repricer-data:/data repricer:0.1.0 verify --data-dir /data
#
# The root filesystem may be mounted read-only: the service writes only under /data.
# No HEALTHCHECK on purpose (there is no shell or curl in the image): Kubernetes probes
# GET :9102/healthz/live and :9102/healthz/ready.

ARG RUST_IMAGE=rust:1-bookworm
# Same Debian release (glibc) as the builder.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---------------------------------------------------------------------------- build
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# The whole workspace (see .dockerignore): Cargo.toml names targets in bench/ and actors/.
COPY . .
# Cache mounts keep the crate registry and target/ between builds (BuildKit); the
# binary is copied out of the cached target/ in the same step.
# release has debug = 1 (line tables) for profiling; the image keeps the symbol table
# (function names in backtraces) but not the DWARF sections.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin repricer \
 && mkdir -p /out/data \
 && objcopy --strip-debug target/release/repricer /out/repricer \
 && /out/repricer --help > /dev/null

# ---------------------------------------------------------------------------- runtime
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="repricer" \
      org.opencontainers.image.description="Price-ingest and price-history service" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"

COPY --from=builder /out/repricer /usr/local/bin/repricer
# /data owned by 65532 in the image, so a fresh Docker named volume (which copies the
# image directory's ownership) is writable. On Kubernetes, fsGroup 65532 does this.
COPY --from=builder --chown=65532:65532 /out/data /data

USER 65532:65532
ENV REPRICER_DATA_DIR=/data
VOLUME ["/data"]
# 8080: API. 9102: admin (/metrics, /healthz/live, /healthz/ready).
EXPOSE 8080 9102
# SIGTERM drains in-flight requests (REPRICER_DRAIN_TIMEOUT, default 20s), seals the
# open segment, flushes spans and exits 0: give `docker stop -t` / compose
# stop_grace_period more than the drain timeout.
STOPSIGNAL SIGTERM
# Exec form: repricer is PID 1 and receives SIGTERM itself.
ENTRYPOINT ["/usr/local/bin/repricer"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--admin-listen", "0.0.0.0:9102", "--data-dir", "/data"]
