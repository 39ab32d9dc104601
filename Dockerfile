# Multi-stage build: compile in the Rust image, run from a slim Debian image
# as a non-root user. No Docker engine runs on the project's machines, so
# this file is reviewed, not built, there.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
COPY benches ./benches
RUN cargo build --release --locked --bin supervisor-gateway \
 && strip target/release/supervisor-gateway

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /src/target/release/supervisor-gateway /usr/local/bin/supervisor-gateway
USER 10001:10001
# glibc gives buffers over 128 KiB back to the system as soon as they are
# freed, rather than keeping up to tens of MiB after large WebSocket
# messages or held bodies (README, "WebSocket, event streams and large
# bodies").
ENV MALLOC_MMAP_THRESHOLD_=131072
EXPOSE 8080
# The admin listener stays on the container's loopback (admin_listen's
# default); the check needs no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/supervisor-gateway", "healthcheck", "--admin", "127.0.0.1:8099"]
ENTRYPOINT ["/usr/local/bin/supervisor-gateway"]
CMD ["serve", "--config", "/etc/supervisor-gateway/gateway.yaml"]
