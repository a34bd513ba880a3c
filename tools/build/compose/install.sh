#!/usr/bin/env bash
# Builds the Docker Compose v2 plugin pinned in tools/build/compose/go.mod from the Go module
# proxy and installs it as ~/.docker/cli-plugins/docker-compose, so `docker compose` works
# where only Compose v1 (Debian's docker-compose) or nothing is installed. About 2.5 minutes
# cold; the Go build cache makes a rebuild take seconds. Skips when Compose v2 is present.
set -euo pipefail
cd "$(dirname "$0")"
export GOWORK=off # this folder is its own module, outside the course workspace

want=$(go list -m -f '{{.Version}}' github.com/docker/compose/v2)
if have=$(docker compose version --short 2>/dev/null) && [[ "$have" == 2.* || "$have" == v2.* ]]; then
  echo "compose-v2: docker compose $have is already installed"
  exit 0
fi
command -v go >/dev/null || { echo "compose-v2: Go is needed to build Compose (https://go.dev/dl)"; exit 1; }
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
mkdir -p "$plugins"
echo "compose-v2: building Docker Compose $want (about 2.5 minutes the first time)"
go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$want" \
  -o "$plugins/docker-compose" github.com/docker/compose/v2/cmd
docker compose version
