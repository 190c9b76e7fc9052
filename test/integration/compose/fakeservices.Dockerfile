# syntax=docker/dockerfile:1
# The fake external services of docker-compose.yaml (build context: the
# repository root).

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/fakeservices ./test/integration/cmd/fakeservices \
    && mkdir -p /out/certs

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fakeservices /fakeservices
# A new named volume mounted on /certs takes this owner: the fake services
# write the test CA there as non-root.
COPY --from=build --chown=65532:65532 /out/certs /certs
USER 65532:65532
ENTRYPOINT ["/fakeservices"]
