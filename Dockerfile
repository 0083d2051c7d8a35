# Multi-stage build: compile in the Rust image, run in slim Debian as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
# The shipped binary without debug info (Cargo.toml keeps it for profiling):
# 98 MB with it, about 15 MB without.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
# The dependencies first, in a layer of their own, built against empty crates:
# a change to the broker's sources rebuilds only the broker, not every crate.
COPY Cargo.toml Cargo.lock build.rs ./
COPY bench/Cargo.toml bench/Cargo.toml
COPY testkit/Cargo.toml testkit/Cargo.toml
RUN mkdir -p src bench/src testkit/src migrations \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > bench/src/main.rs && touch testkit/src/lib.rs \
    && cargo build --release --locked --bin smpp-broker \
    && rm -rf src
COPY src ./src
COPY config ./config
COPY migrations ./migrations
# COPY keeps the files' own times, which may be older than the empty crate's
# build: touched, they are newer, and cargo builds the real ones.
RUN touch src/main.rs src/lib.rs build.rs \
    && cargo build --release --locked --bin smpp-broker

FROM debian:bookworm-slim
# sqlite3: read the queues with plain SQL inside the container.
RUN apt-get update \
    && apt-get install -y --no-install-recommends sqlite3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin broker \
    && mkdir -p /data /etc/smpp-broker \
    && chown broker:broker /data
COPY --from=build /src/target/release/smpp-broker /usr/local/bin/smpp-broker
COPY config/docker.toml /etc/smpp-broker/docker.toml
USER broker
WORKDIR /data
VOLUME ["/data"]
EXPOSE 2775 2776 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["smpp-broker", "healthcheck"]
# The same path docker-compose.yml names; compose mounts ./config over it.
ENV SMPP_BROKER_CONFIG=/etc/smpp-broker/docker.toml
ENTRYPOINT ["smpp-broker"]
CMD ["serve"]
