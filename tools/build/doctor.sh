#!/usr/bin/env bash
# Checks what `make test` needs and says how to fix each missing piece. A missing
# prerequisite is a failure, never a silent skip.
set -uo pipefail
cd "$(dirname "$0")/../.."
fail=0
need() { echo "doctor: MISSING $1"; echo "        fix: $2"; fail=1; }

docker info >/dev/null 2>&1 || need "a reachable Docker engine" "start Docker (or set DOCKER_HOST); see docs/troubleshooting.md"
v=$(docker compose version --short 2>/dev/null || true)
[[ "$v" == 2.* || "$v" == v2.* ]] || need "Docker Compose v2 (docker compose version printed '${v:-nothing}')" \
  "make compose-v2 (Debian's docker-compose package is v1 and cannot read these files); see docs/troubleshooting.md#compose-v1"
command -v go >/dev/null || need "Go (the tests and offline images build with it)" "install Go $(sed -n 's/^go //p' go.work) or newer"

if [[ -f tools/standins/offline.env ]]; then
  while IFS='=' read -r var image; do
    [[ "$var" =~ ^[A-Z_]+_IMAGE$ ]] || continue
    docker image inspect "$image" >/dev/null 2>&1 || need "offline stand-in $image ($var)" "make standins"
  done < tools/standins/offline.env
elif ! docker image inspect "$(sed -n 's/^GO_IMAGE=//p' stages/images.env)" >/dev/null 2>&1 && \
     ! timeout 20 docker pull -q "$(sed -n 's/^GO_IMAGE=//p' stages/images.env)" >/dev/null 2>&1; then
  need "the pinned images (no registry reachable?)" "make offline (builds local stand-ins); see docs/troubleshooting.md#no-registry"
fi
[[ $fail == 0 ]] && echo "doctor: Docker, Compose $v and the images are ready$( [[ -f tools/standins/offline.env ]] && echo ' (offline stand-ins)')"
exit $fail
