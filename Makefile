# A hands-on system-design course. This Makefile is the way in; read it top to bottom as
# the setup guide.
#
#   1. You need Docker with Compose v2 (`docker compose version` says v2.x) and make.
#      Go is needed only to develop the course (make test, make offline).
#   2. Run a stage:     make stage 1 up      then read docs/01-base.md
#   3. Prove it works:  make stage 1 check   (it breaks the stack on purpose, then reports)
#   4. Measure it:      make stage 1 bench
#   5. Clean up:        make stage 1 down
#
# No registry reachable (CI, air-gapped machines)?  make offline  builds local stand-ins for
# every third-party image from Debian packages and switches the stages to them.
# No Compose v2?  make compose-v2  builds the pinned version from the Go module proxy.
#
# Every stage publishes its own host ports on 127.0.0.1 only (stage N uses 8N00-8N99), so
# two stages can be up at once without colliding.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# Pinned third-party images live in stages/images.env; `make offline` adds tools/standins/offline.env,
# which names the local stand-ins instead and builds the Go services from host binaries.
include stages/images.env
OFFLINE_ENV := $(wildcard tools/standins/offline.env)
COMPOSE_ENV := --env-file stages/images.env $(if $(OFFLINE_ENV),--env-file $(OFFLINE_ENV))
ifneq ($(OFFLINE_ENV),)
  export GO_BUILD := prebuilt
  export DOCKER_BUILDKIT := 0
  PREPARE := binaries
  STAGE_PREPARE := go-context
else
  export GO_BUILD ?= source
endif

GOARCH := $(shell go env GOARCH 2>/dev/null || echo amd64)
TOOLS_IMAGE := course-tools:dev
DOCKER_SOCK := /var/run/docker.sock
DOCKER_GID := $(shell stat -c %g $(DOCKER_SOCK) 2>/dev/null || stat -f %g $(DOCKER_SOCK) 2>/dev/null || echo 0)

# ---- make stage N VERB ----------------------------------------------------------------
# `make stage 1 up` arrives as three goals; the words after "stage" become arguments.
ifeq (stage,$(firstword $(MAKECMDGOALS)))
  STAGE_ARGS := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
  $(eval $(STAGE_ARGS):;@:)
  # a repeated word (make stage 3 scale 3) would make make say "Nothing to be done"
  ifneq ($(words $(STAGE_ARGS)),$(words $(sort $(STAGE_ARGS))))
    MAKEFLAGS += -s
  endif
  N := $(word 1,$(STAGE_ARGS))
  VERB := $(word 2,$(STAGE_ARGS))
  ARG := $(word 3,$(STAGE_ARGS))
endif
ifdef N
  NN := $(shell awk 'BEGIN { printf "%02d", "$(N)" + 0 }')
  STAGE_DIR := $(wildcard stages/$(NN)-*)
  PROJECT := course-$(notdir $(STAGE_DIR))
  COMPOSE := docker compose $(COMPOSE_ENV) -f $(STAGE_DIR)/compose.yaml
  # AGAINST=M runs stage N's check or bench against stage M's stack (the negative controls).
  AGAINST_DIR := $(if $(AGAINST),$(wildcard stages/$(shell awk 'BEGIN { printf "%02d", "$(AGAINST)" + 0 }')-*),$(STAGE_DIR))
  TARGET_PROJECT := course-$(notdir $(AGAINST_DIR))
endif

.PHONY: help stage
help: ## this guide
	@sed -n '1,/^$$/p' Makefile | sed 's/^# \{0,1\}//'
	@echo "Targets:"
	@grep -E '^[a-z0-9-]+:.*## ' Makefile | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "Stage verbs (make stage N VERB): up, check, bench, logs, ps, down, diff, curl PATH, scale COUNT, dns, cache on|off"
	@echo "Stages:"
	@awk -F' = ' '/^number/{n=$$2} /^title/{gsub(/"/,"",$$2); printf "  %2s  %s\n", n, $$2}' stages/course.toml

stage: ## make stage N up|check|bench|logs|ps|down|diff|curl PATH|scale COUNT|dns|cache on|off
	@[[ "$(N)" =~ ^[0-9]+$$ ]] || { echo "usage: make stage N up|check|bench|logs|ps|down|diff|curl PATH|scale COUNT|dns|cache on|off (N is a stage number)"; exit 2; }
	@[[ -n "$(STAGE_DIR)" ]] || { echo "no stage $(N): see make help"; exit 2; }
	@[[ -n "$(AGAINST_DIR)" ]] || { echo "no stage $(AGAINST) to run against"; exit 2; }
	@$(MAKE) stage-$(or $(VERB),help) N=$(N) ARG=$(ARG)

stage-%:
	@echo "usage: make stage $(N) up|check|bench|logs|ps|down|diff|curl PATH|scale COUNT|dns|cache on|off ('$*' is not one of them)"; exit 2

stage-up: $(STAGE_PREPARE)
	@echo "starting $(STAGE_DIR) (project $(PROJECT))$(if $(OFFLINE_ENV), with offline stand-in images)"
	$(COMPOSE) up -d --build --wait --wait-timeout 120
	@$(COMPOSE) ps --format 'table {{.Service}}\t{{.Status}}\t{{.Ports}}'
	@echo "next: read docs/$(notdir $(STAGE_DIR)).md, then make stage $(N) check"

stage-down:
	$(COMPOSE) --profile '*' down --volumes --remove-orphans --timeout 20

# What this stage adds to the stack it builds on (builds_on in stages/course.toml): the
# compose file, configs and Go mains, side by side with git's diff.
BASE_N = $(shell awk -v n=$(N) '/^number/ { cur = $$3 } /^builds_on/ && cur == n { print $$3 }' stages/course.toml)
stage-diff:
	@[[ -n "$(BASE_N)" ]] || { echo "stage $(N) builds on no earlier stage: read $(STAGE_DIR)/README.md"; exit 0; }; \
	  base=$$(ls -d stages/$$(printf %02d $(BASE_N))-*); echo "stage $(N) ($(STAGE_DIR)) against the stage it builds on ($$base):"; \
	  git --no-pager diff --no-index --stat $$base $(STAGE_DIR) || true; \
	  git --no-pager diff --no-index $$base $(STAGE_DIR) || true

stage-logs:
	$(COMPOSE) logs --follow --tail 50

stage-ps:
	$(COMPOSE) ps

# Scale the server replicas; nginx resolves the service name only at start or reload, so
# it is reloaded to pick up the new set.
stage-scale:
	@[[ "$(ARG)" =~ ^[1-9][0-9]?$$ ]] || { echo "usage: make stage $(N) scale COUNT (1 to 99)"; exit 2; }
	$(COMPOSE) up -d --wait --no-recreate --scale server=$(ARG) server
	@if $(COMPOSE) ps --services | grep -qx nginx; then \
	  $(COMPOSE) exec nginx nginx -s reload && echo "nginx reloaded: it now spreads requests over $(ARG) replicas"; fi

# Switch the servers' cache on or off at run time, on every replica (stage 05 on).
stage-cache: tools-image
	@[[ "$(ARG)" == on || "$(ARG)" == off ]] || { echo "usage: make stage $(N) cache on|off"; exit 2; }
	@$(RUN_TOOL) cache $(ARG)

# GET a path from the stage's entry point, from inside its network (the VIP from stage 06).
stage-curl: tools-image
	@[[ "$(ARG)" == /* ]] || { echo "usage: make stage $(N) curl /PATH, e.g. make stage $(N) curl /users/1"; exit 2; }
	@$(RUN_TOOL) curl $(N) $(ARG)

# What Docker's embedded DNS answers for the server service: one address per replica.
stage-dns: tools-image
	@$(RUN_TOOL) dns server

# check and bench run the course tool in a container on the stack's network: it reaches
# services by name, and stops or kills containers through the Docker socket.
RUN_TOOL = mkdir -p reports && docker run --rm --network $(TARGET_PROJECT)_default \
	--memory 256m --pids-limit 128 --cap-drop ALL --security-opt no-new-privileges \
	--user $$(id -u):$$(id -g) --group-add $(DOCKER_GID) \
	-v $(DOCKER_SOCK):/var/run/docker.sock -v "$(CURDIR)":/course:ro -v "$(CURDIR)/reports":/course/reports \
	-e COURSE_ROOT=/course -e COURSE_PROJECT=$(TARGET_PROJECT) -e COURSE_REPORT \
	$(TOOLS_IMAGE)

stage-check: tools-image
	@docker network inspect $(TARGET_PROJECT)_default >/dev/null 2>&1 || { echo "$(TARGET_PROJECT) is not up: run make stage $(or $(AGAINST),$(N)) up"; exit 2; }
	@$(RUN_TOOL) check $(N)

stage-bench: tools-image $(STAGE_PREPARE)
	@docker network inspect $(TARGET_PROJECT)_default >/dev/null 2>&1 || { echo "$(TARGET_PROJECT) is not up: run make stage $(N) up"; exit 2; }
	$(COMPOSE) --profile bench up -d --build --wait --wait-timeout 120
	@$(RUN_TOOL) bench $(N)

# ---- building --------------------------------------------------------------------------
.PHONY: binaries go-context tools-image offline standins compose-v2 readmes
GO_LINUX_BUILD := CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) go build -trimpath -ldflags='-s -w'
binaries: ## build every Go binary for Linux into tools/bin/linux/<name>/app (the offline images copy them)
	@for dir in $$(go list -f '{{if eq .Name "main"}}{{.Dir}}{{end}}' ./stages/...); do \
	  name=$$(basename $$(dirname $$dir))-$$(basename $$dir); \
	  $(GO_LINUX_BUILD) -o tools/bin/linux/$$name/app ./$${dir#$(CURDIR)/}; \
	done
	@$(GO_LINUX_BUILD) -o tools/bin/linux/course/app ./tools/cmd/course

# Offline, each Go image copies a prebuilt binary. Compose sends the classic builder the
# whole build context, compressed, for every image: the repository's would carry every
# stage's binaries (about 130 MB, 8 s an image). So each stage gets a context of its own
# holding the Dockerfile and, as hard links, only the binaries its compose file names.
GO_CONTEXT_DIR = $(CURDIR)/tools/bin/context/$(notdir $(STAGE_DIR))
go-context: binaries
	@[[ -n "$(STAGE_DIR)" ]] || { echo "go-context needs a stage: make stage N up"; exit 2; }
	@rm -rf "$(GO_CONTEXT_DIR)" && mkdir -p "$(GO_CONTEXT_DIR)/stages" "$(GO_CONTEXT_DIR)/tools/bin/linux"
	@cp stages/Dockerfile "$(GO_CONTEXT_DIR)/stages/" && touch "$(GO_CONTEXT_DIR)/tools/bin/linux/.keep"
	@for bin in $$($(COMPOSE) --profile '*' config | awk '$$1 == "BIN:" { print $$2 }' | sort -u); do 	  mkdir -p "$(GO_CONTEXT_DIR)/tools/bin/linux/$$bin" && ln "tools/bin/linux/$$bin/app" "$(GO_CONTEXT_DIR)/tools/bin/linux/$$bin/app"; 	done
ifneq ($(OFFLINE_ENV),)
stage-%: export GO_CONTEXT = $(GO_CONTEXT_DIR)
endif

tools-image: $(PREPARE)
	@out=$$(docker build -q -f stages/Dockerfile --target $(GO_BUILD) --build-arg BIN=course --build-arg PKG=tools/cmd/course \
	  --build-arg GO_IMAGE=$(GO_IMAGE) -t $(TOOLS_IMAGE) . 2>&1) || { echo "$$out"; exit 1; }

readmes: ## rewrite the check-steps list of each stage folder's README.md from the checkers' steps
	go run ./tools/cmd/course readmes

standins: ## build the offline stand-ins for third-party images (cached; needs root and debootstrap)
	bash tools/standins/standins.sh

offline: standins binaries ## use local stand-ins and host-built binaries: for machines without a registry
	@echo "offline mode on: tools/standins/offline.env overrides stages/images.env (rm tools/standins/offline.env to undo)"

compose-v2: ## build and install the pinned Docker Compose v2 plugin from the Go module proxy
	bash tools/build/compose/install.sh

# ---- testing ---------------------------------------------------------------------------
.PHONY: test unit lint fuzz e2e doctor
GO_PKGS := ./shared/... ./stages/... ./tools/...
test: unit e2e ## lint, fuzz, unit tests (race detector) and every finished stage end to end

unit: lint fuzz ## lint and fuzz, then the unit tests of the shared packages, stages and tools, with the race detector
	go test -race -count=1 $(GO_PKGS)

# staticcheck is the tool of a module of its own, tools/build/lint, outside go.work: required by
# tools/go.mod, its x/tools and friends would join the workspace's build list and every
# image's module download. `go tool -n` builds it (cached) and prints its path, so it runs
# from here, where go.work puts all three modules in view.
lint: ## go.mod tidiness, go vet and staticcheck on the shared packages, stages and tools
	@for m in shared stages tools; do (cd $$m && GOWORK=off go mod tidy -diff) || { echo "$$m/go.mod is not tidy: cd $$m && GOWORK=off go mod tidy"; exit 1; }; done
	go vet $(GO_PKGS)
	"$$(GOWORK=off go -C tools/build/lint tool -n staticcheck)" $(GO_PKGS)

# -fuzz takes one target of one package a run, so each Fuzz function found gets its own.
# The seed corpora (f.Add and testdata/fuzz) also run as plain tests in unit.
FUZZTIME ?= 3s
fuzz: ## fuzz every input parser for FUZZTIME (3s) each
	@grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' shared stages tools | while IFS=: read -r file fn; do \
	  cmd="go test -run '^\$$' -fuzz '^$${fn#func }\$$' -fuzztime=$(FUZZTIME) ./$$(dirname $$file)"; \
	  echo "$$cmd"; eval "$$cmd"; \
	done

e2e: doctor ## every finished stage: up, check, negative control, down (and the stand-ins' smoke test when offline)
	$(if $(OFFLINE_ENV),bash tools/standins/standins.sh --smoke)
	go run ./tools/cmd/course e2e

doctor: ## check that Docker, Compose v2 and the images are ready, and say how to fix what is not
	@bash tools/build/doctor.sh
