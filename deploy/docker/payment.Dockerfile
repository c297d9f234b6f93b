# payment: a static Go binary on distroless, non-root — the same image `make images` builds as
# ztbank/payment:dev (deploy/images/README.md), for machines that can pull base images. This
# one cannot (no registry is reachable here), so it is not built here: use `make images`.
# Build from the workspace root:
#   docker build -f deploy/docker/payment.Dockerfile -t ztbank/payment:dev .
# Targets: "dev" adds a busybox shell for Tilt's live update on kind; the default (last)
# target is the production image. No `# syntax=` line and no `RUN --mount`: neither the
# classic builder nor BuildKit has to fetch a frontend image. .dockerignore keeps .dev, .git
# and keys out of the context.

FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
# The whole workspace is needed: go.work names every module and ./services/payment imports libs.
COPY . .
RUN go build -buildvcs=false -ldflags="-s -w" -o /out/payment ./services/payment

FROM gcr.io/distroless/static-debian12:debug-nonroot AS dev
COPY --from=build /out/payment /app/payment
USER 65532:65532
ENTRYPOINT ["/app/payment"]

FROM gcr.io/distroless/static-debian12:nonroot AS prod
COPY --from=build /out/payment /app/payment
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/app/payment"]
