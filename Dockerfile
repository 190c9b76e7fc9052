# syntax=docker/dockerfile:1
# xds-server: a static binary on distroless, run as non-root.
#
#   docker build -t egress-xds/xds-server .
#   docker run -v "$PWD/examples:/config:ro" -p 18000:18000 -p 9090:9090 egress-xds/xds-server

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
# Modules first: they change less often than the code.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/xds-server ./cmd/xds-server
RUN mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/xds-server /xds-server
# What a restart must not lose (--state-dir): owned by the server's user, so
# that a volume mounted there starts writable.
COPY --from=build --chown=65532:65532 /out/state /var/lib/egress-xds
ENV EGRESS_XDS_STATE_DIR=/var/lib/egress-xds
# The admin endpoints default to 127.0.0.1, unreachable from outside a
# container; probes and scrapers need them on every interface.
ENV EGRESS_XDS_ADMIN_ADDRESS=0.0.0.0:9090
# ADS (gRPC) and admin (health, readiness, metrics, debug).
EXPOSE 18000 9090
USER 65532:65532
ENTRYPOINT ["/xds-server"]
CMD ["serve", "--config-dir", "/config"]
