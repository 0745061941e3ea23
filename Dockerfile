# syntax=docker/dockerfile:1
#
# The countersign controller and CLI image.
#
#   docker build -t ghcr.io/countersign-dev/countersign:dev .
#
# Two stages: a Rust toolchain builds the release binary, and a distroless runtime holds only
# the binary, glibc, CA certificates and a non-root user. The binary links glibc dynamically
# (ring, rustls), which is why the runtime is distroless/cc and not distroless/static.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The whole workspace is needed for cargo to resolve it; only the countersign binary is built.
COPY Cargo.toml Cargo.lock ./
COPY controller controller
COPY tests tests
# Cache mounts keep the registry and the incremental target dir between builds (Tilt's loop).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p countersign --bin countersign \
    && install -D -m 0755 target/release/countersign /out/countersign

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/countersign /usr/local/bin/countersign
# distroless's nonroot user; the Deployment also sets runAsNonRoot and runAsUser 65532.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/countersign"]
CMD ["run"]
