# syntax=docker/dockerfile:1.7
# payment: a static Go binary on distroless, non-root. Build from the workspace root:
#   docker build -f deploy/docker/payment.Dockerfile -t ztbank/payment:dev .
# Targets: "dev" adds a busybox shell for Tilt's live update on kind; the default (last)
# target is the production image.

FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
# The whole workspace is needed: go.work names every module and ./services/payment imports libs.
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags="-s -w" -o /out/payment ./services/payment

FROM gcr.io/distroless/static-debian12:debug-nonroot AS dev
COPY --from=build /out/payment /app/payment
USER 65532:65532
ENTRYPOINT ["/app/payment"]

FROM gcr.io/distroless/static-debian12:nonroot AS prod
COPY --from=build /out/payment /app/payment
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/app/payment"]
