# Robot Race: build in release with cargo, run from a slim image as a non-root user.
# Templates and static files are compiled into the binary, so the image holds one file.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY static static
COPY templates templates
# Cargo.toml declares the integration tests and the load tool (an example): cargo reads their
# paths even when it builds only the server.
COPY tests tests
COPY examples examples
RUN cargo build --release --locked --bin robot-race

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home robotrace
COPY --from=build /src/target/release/robot-race /usr/local/bin/robot-race
USER robotrace
ENV RUST_LOG=info
EXPOSE 8080
# Listens on :$PORT when PORT is set (Heroku), else :8080; joins a cluster when REDIS_URL is set.
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS "http://127.0.0.1:${PORT:-8080}/health" || exit 1
ENTRYPOINT ["robot-race"]
