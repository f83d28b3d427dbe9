# The publisher container: PublisherService on gRPC :9090, the REST facade
# and health on :8081. Build for Fargate's Graviton (or any) platform from any
# host, e.g.
#
#   docker buildx build --platform linux/arm64 -t wsgateway-publisher .
#
# Base images are pinned by tag and digest; refresh both together with
# `docker buildx imagetools inspect <image>:<tag>` (the index digest).
# deploy/dockerfile_test.go checks this file against the Makefile's build.

# The toolchain runs natively and cross-compiles: Go needs no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
COPY . .
# The same build as `make build`'s for the publisher.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/publisher ./services/publisher

# A static binary needs no libc: distroless/static is CA certificates,
# time zones and a passwd file, with no shell to exploit.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
COPY --from=build /out/publisher /publisher
# Outside a container the defaults listen on loopback only.
ENV GRPC_ADDR=0.0.0.0:9090 \
    HTTP_ADDR=0.0.0.0:8081
EXPOSE 9090 8081
# nonroot by number, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# No shell or curl here: the binary probes its own /healthz.
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/publisher", "-healthcheck"]
ENTRYPOINT ["/publisher"]
