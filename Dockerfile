# Multi-stage build: compile with the Rust toolchain, run on a slim Debian.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tokenledger

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data tokenledger && mkdir -p /data && chown tokenledger /data
COPY --from=build /src/target/release/tokenledger /usr/local/bin/tokenledger
USER tokenledger
WORKDIR /data
ENV HOST=0.0.0.0 PORT=1337 DATA_DIR=/data
EXPOSE 1337
# Healthy once the projections have caught up with the log (`/_ready`); no curl needed.
HEALTHCHECK --interval=5s --timeout=3s --start-period=120s --retries=3 CMD ["tokenledger", "probe"]
ENTRYPOINT ["tokenledger"]
CMD ["serve"]
