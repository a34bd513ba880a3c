# One Dockerfile builds every Go binary of the course into a FROM-scratch image.
#   target "source"   (default): compiles inside golang:<pinned>; a learner needs only Docker.
#   target "prebuilt": copies a binary built on the host (make binaries) from
#                      bin/linux/<BIN>/app; used where no registry can be reached. It comes
#                      first so the classic builder (DOCKER_BUILDKIT=0) never touches the
#                      golang image, and its COPY tolerates a missing binary (the committed
#                      .keep plus a wildcard) because the classic builder also runs it on
#                      the way to "source".
# BIN names the binary: <stage>-<command>, e.g. 01-base-server, or "course" for the tools.
ARG GO_IMAGE=golang:1.26.8-trixie

FROM scratch AS prebuilt
ARG BIN
COPY bin/linux/.keep bin/linux/${BIN}/ap[p] /
USER 65532:65532
ENTRYPOINT ["/app"]

FROM ${GO_IMAGE} AS build
WORKDIR /src
# Module files first: the download layer is reused until a go.mod or go.sum changes. All
# three sit at their repository paths, so the replace ../shared in stages and tools resolves.
COPY go.work go.work.sum* ./
COPY shared/go.mod shared/go.sum shared/
COPY stages/go.mod stages/go.sum stages/
COPY tools/go.mod tools/go.sum tools/
RUN go mod download
COPY . .
ARG PKG
RUN test -n "$PKG" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /app "./$PKG"

FROM scratch AS source
COPY --from=build /app /app
USER 65532:65532
ENTRYPOINT ["/app"]
