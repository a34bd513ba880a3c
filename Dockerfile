# One Dockerfile builds every Go binary of the course into a FROM-scratch image.
#   target "source"   (default): compiles inside golang:<pinned>; a learner needs only Docker.
#   target "prebuilt": copies a binary already built on the host into bin/linux/ (make
#                      binaries); used where no registry can be reached. It comes first so
#                      the classic builder (DOCKER_BUILDKIT=0) never touches the golang image.
# BIN names the binary: <stage>-<command>, e.g. 01-base-server, or "course" for the tools.
ARG GO_IMAGE=golang:1.26.8-trixie

FROM scratch AS prebuilt
ARG BIN
COPY bin/linux/${BIN} /app
USER 65532:65532
ENTRYPOINT ["/app"]

FROM ${GO_IMAGE} AS build
WORKDIR /src
# Module files first: the download layer is reused until a go.mod or go.sum changes.
COPY go.work go.work.sum* ./
COPY shared/go.mod shared/go.sum shared/
COPY stages/go.mod stages/
COPY tools/go.mod tools/go.sum tools/
RUN go mod download
COPY . .
ARG PKG
RUN test -n "$PKG" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /app "./$PKG"

FROM scratch AS source
COPY --from=build /app /app
USER 65532:65532
ENTRYPOINT ["/app"]
