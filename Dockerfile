# syntax=docker/dockerfile:1
#
# egret's container image: a static binary on distroless, as user 65532.
#
#   docker build -t egret .                          # the proxy (last stage)
#   docker build --target redirect -t egret-redirect .   # the Kubernetes init container
#
# The build stage runs on the builder's platform and cross-compiles, so
# `docker buildx build --platform linux/amd64,linux/arm64 .` needs no emulation.

ARG GO_VERSION=1.26
# The proxy's base image. The default is distroless; a test builds on
# scratch, offline (deploy/image_test.go).
ARG BASE=gcr.io/distroless/static-debian12:nonroot
# Where the proxy's binary comes from: the build stage (the default), or
# "prebuilt", bin/egret of `make build` in a build context that holds it
# (the repository's .dockerignore leaves bin/ out, so the test makes its
# own context).
ARG BINARY=build

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/egret ./cmd/egret

# A binary built outside, by `make build`.
FROM scratch AS prebuilt
COPY bin/egret /out/egret

FROM ${BINARY} AS binary

# The init container that installs the redirect in a pod's network
# namespace (deploy/kubernetes/sidecar.yaml). It runs once, as root with
# NET_ADMIN and NET_RAW, and exits.
FROM debian:bookworm-slim AS redirect
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables nftables \
    && rm -rf /var/lib/apt/lists/*
COPY --chmod=0755 deploy/iptables.sh /usr/local/bin/egret-iptables
COPY --chmod=0755 deploy/nftables.sh /usr/local/bin/egret-nftables
ENTRYPOINT ["/usr/local/bin/egret-iptables"]
CMD ["--help"]

# The proxy. No shell, no package manager, nothing but the binary and CA
# certificates; the numeric user lets Kubernetes check runAsNonRoot.
FROM ${BASE} AS egret
COPY --from=binary /out/egret /usr/local/bin/egret
USER 65532:65532
# 3128 explicit proxy, 3129 transparent listener, 3130 HTTPS proxy (--listen-tls :3130),
# 9090 /healthz /readyz.
EXPOSE 3128 3129 3130 9090
ENTRYPOINT ["/usr/local/bin/egret"]
# In a container the admin endpoints must be reachable by probes.
CMD ["serve", "--admin", ":9090"]
