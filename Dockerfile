# syntax=docker/dockerfile:1
# One image with the three binaries: `vitrine` (admin commands: migrate, provision, gateway),
# `user-information` and `products` (one service each). Kubernetes runs it with the command of
# the role (see deploy/kubernetes); probes are Kubernetes' job, so there is no HEALTHCHECK.

FROM rust:1.94-bookworm AS build
WORKDIR /src
# Dependencies first, from the lock file alone, so source edits reuse their layer.
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked -p vitrine --bins \
 && mkdir -p /out \
 && cp target/dist/vitrine target/dist/user-information target/dist/products /out/

# Runtime: distroless with glibc and CA certificates, no shell, non-root (uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/vitrine /out/user-information /out/products /usr/local/bin/
USER 65532:65532
ENV VITRINE_LISTEN=0.0.0.0:8080 \
    VITRINE_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/vitrine"]
