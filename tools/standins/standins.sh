#!/usr/bin/env bash
# tools/standins/standins.sh: build local stand-ins for the third-party images the course uses, for
# machines whose Docker engine reaches no image registry (only Debian's package archive).
#
#   tools/standins/standins.sh           build what is missing, write tools/standins/offline.env
#   tools/standins/standins.sh --smoke   the same, then prove each stand-in honours the official
#                                image's contract (also: tools/standins/standins.sh smoke)
#
# How it works (details in tools/standins/README.md):
#   1. Every folder tools/standins/<name>/ is one stand-in: `image` names the stages/images.env
#      variable it replaces, `packages` lists the Debian packages it needs, `Dockerfile`
#      builds it FROM the shared base, optional `prune` lists base paths to delete and
#      optional `smoke.sh` tests it. Adding a stand-in means adding a folder; this script
#      does not change.
#   2. One debootstrap'ed Debian rootfs holds the union of all packages; `docker import`
#      makes it the base image course-standin/trixie-base:<hash of its recipe>. One shared
#      base instead of one per stand-in: debootstrap is the slow part (about 75 s) and
#      Docker stores the shared layer once.
#   3. Each stand-in is tagged course-standin/<name>:<hash of base + official tag + folder>.
#      A tag that exists is not rebuilt, so a run with nothing changed takes seconds.
#   4. tools/standins/offline.env maps each variable to its stand-in (POSTGRES_IMAGE=...); it
#      overrides stages/images.env, and the compose files stay the same.
#
# Needs root only to create the base image (debootstrap chroots and creates device nodes).
# Environment: STANDINS_MIRROR (default http://deb.debian.org/debian), XDG_CACHE_HOME.
set -euo pipefail

readonly SUITE=trixie
readonly MIRROR=${STANDINS_MIRROR:-http://deb.debian.org/debian}
# Bump when the way the base rootfs is made changes (strip_rootfs, import options): the
# base hash covers only this, the suite, the packages and the prune lists.
readonly BASE_RECIPE=1
# In every base: `ip` for the network stages, TLS roots, curl for compose healthchecks.
readonly ALWAYS_PACKAGES=(iproute2 ca-certificates curl)

STANDINS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$STANDINS_DIR/../.." && pwd)
readonly STANDINS_DIR REPO_DIR
readonly IMAGES_ENV=$REPO_DIR/stages/images.env
readonly OFFLINE_ENV=$STANDINS_DIR/offline.env
readonly WORK_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/course-standins

# Time limits (seconds): nothing waits forever.
readonly T_DOCKER=60 T_DEBOOTSTRAP=1500 T_IMPORT=900 T_BUILD=1200 T_LOCK=1800

say() { printf '%s\n' "$*"; }
die() {
	printf 'standins: %s\n' "$*" >&2
	exit 1
}

usage() {
	sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# Lines of a list file without comments and blanks.
read_list() {
	sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e 's/^[[:space:]]*//' "$1" | grep -v '^$' || true
}

short_hash() { sha256sum | cut -c1-12; }

image_exists() { timeout "$T_DOCKER" docker image inspect "$1" >/dev/null 2>&1; }

# The value of VAR in stages/images.env (plain KEY=VALUE lines; not sourced).
official_tag() {
	local value
	value=$(sed -n "s/^$1=//p" "$IMAGES_ENV" | tail -n 1)
	[ -n "$value" ] || die "$IMAGES_ENV has no $1 (named by tools/standins/*/image)"
	printf '%s\n' "$value"
}

# ---------------------------------------------------------------------------------------
# Cleanup on every exit: a half-built rootfs (about 700 MB) and smoke-test containers.

ROOTFS_IN_PROGRESS=
SMOKE_ID=
CHILD=

# bounded SECONDS LOG command...: run a long command with a time limit, output to LOG. It
# runs in the background and we `wait` for it because bash runs a trap only after a
# foreground command ends, and `timeout` puts the command in its own process group, where
# Ctrl-C does not reach it. on_exit stops that group (timeout -k: SIGKILL 10 s after TERM).
bounded() {
	local limit=$1 log=$2 rc=0
	shift 2
	timeout -k 10 "$limit" "$@" >"$log" 2>&1 &
	CHILD=$!
	wait "$CHILD" || rc=$?
	CHILD=
	return "$rc"
}

# Unmount whatever debootstrap left mounted below $1 (it mounts /proc and /sys in the
# chroot and may not unmount them when killed), deepest first.
unmount_below() {
	local target
	findmnt -rn -o TARGET | awk -v dir="$1/" 'index($0, dir) == 1' | sort -r |
		while read -r target; do
			umount "$target" 2>/dev/null || umount -l "$target"
		done
}

remove_rootfs() {
	[ -d "$1" ] || return 0
	unmount_below "$1"
	# --one-file-system: never follow a mount that survived into the host's /proc or /dev.
	rm -rf --one-file-system "$1"
}

on_exit() {
	local rc=$?
	if [ -n "$CHILD" ]; then
		kill -TERM -- "-$CHILD" 2>/dev/null || true
		wait "$CHILD" 2>/dev/null || true
	fi
	if [ -n "$ROOTFS_IN_PROGRESS" ]; then
		say "standins: removing the unfinished rootfs $ROOTFS_IN_PROGRESS" >&2
		remove_rootfs "$ROOTFS_IN_PROGRESS" || true
	fi
	[ -z "$SMOKE_ID" ] || smoke_cleanup
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
# The stand-ins: folders with a Dockerfile. Filled by load_standins.

NAMES=()               # folder names, sorted
declare -A VAR=()      # name -> stages/images.env variable it replaces (POSTGRES_IMAGE)
declare -A OFFICIAL=() # name -> official tag from stages/images.env (postgres:17.6-trixie)
declare -A TAG=()      # name -> stand-in tag (course-standin/postgres:<hash>)

load_standins() {
	local dir name var
	for dir in "$STANDINS_DIR"/*/; do
		dir=${dir%/}
		name=$(basename "$dir")
		[ -f "$dir/Dockerfile" ] || continue
		[ -f "$dir/image" ] || die "$dir/image is missing (one line: the stages/images.env variable it replaces)"
		[ -f "$dir/packages" ] || die "$dir/packages is missing (Debian packages, one per line)"
		var=$(read_list "$dir/image")
		[[ $var =~ ^[A-Z][A-Z0-9_]*_IMAGE$ ]] || die "$dir/image must hold one name like POSTGRES_IMAGE, not '$var'"
		[[ $name =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "stand-in folder names must be lowercase image names: $name"
		NAMES+=("$name")
		VAR[$name]=$var
		OFFICIAL[$name]=$(official_tag "$var")
	done
	[ "${#NAMES[@]}" -gt 0 ] || die "no stand-ins found in $STANDINS_DIR"
}

# ---------------------------------------------------------------------------------------
# The shared base image.

all_packages() {
	{
		printf '%s\n' "${ALWAYS_PACKAGES[@]}"
		local name
		for name in "${NAMES[@]}"; do read_list "$STANDINS_DIR/$name/packages"; done
	} | LC_ALL=C sort -u
}

all_prune_paths() {
	local name
	for name in "${NAMES[@]}"; do
		[ ! -f "$STANDINS_DIR/$name/prune" ] || read_list "$STANDINS_DIR/$name/prune"
	done | LC_ALL=C sort -u
}

# Make the rootfs smaller before import: package lists, downloaded .debs, docs, man pages
# and message translations are not needed to run servers (about 250 MB).
strip_rootfs() {
	local root=$1 path
	rm -rf --one-file-system "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* \
		"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
	# Keep usr/share/locale/locale.alias (localedef uses it), drop the translations.
	find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
	rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/var/log/*.log
	# debootstrap copies the host's name and resolver; Docker provides both at run time.
	: >"$root/etc/resolv.conf"
	printf 'localhost\n' >"$root/etc/hostname"
	while read -r path; do
		[[ -n $path && $path != /* && $path != *..* ]] || die "bad prune path '$path' (relative, no ..)"
		# Unquoted on purpose: prune paths may be globs.
		# shellcheck disable=SC2086
		rm -rf --one-file-system -- "${root:?}"/$path
	done < <(all_prune_paths)
}

# Sets BASE_TAG; creates the base image if it does not exist yet.
BASE_TAG=
ensure_base() {
	local packages hash tag rootfs log started
	packages=$(all_packages)
	hash=$(printf 'suite=%s\nrecipe=%s\npackages:\n%s\nprune:\n%s\n' \
		"$SUITE" "$BASE_RECIPE" "$packages" "$(all_prune_paths)" | short_hash)
	tag=course-standin/$SUITE-base:$hash
	BASE_TAG=$tag
	if image_exists "$tag"; then
		say "base      $tag  cached"
		return
	fi

	command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
	[ "$(id -u)" = 0 ] || die "the base image $tag does not exist yet and making it runs debootstrap, which needs root: run 'sudo $0' once (later runs reuse it and need no root)"

	rootfs=$WORK_DIR/rootfs-$hash
	log=$WORK_DIR/debootstrap.log
	remove_rootfs "$rootfs" # left over from an interrupted run
	ROOTFS_IN_PROGRESS=$rootfs
	started=$SECONDS
	say "base      $tag  debootstrap $SUITE from $MIRROR (about 75 s; log: $log)"
	say "          packages: $(paste -sd ' ' <<<"$packages")"
	if ! bounded "$T_DEBOOTSTRAP" "$log" debootstrap --variant=minbase \
		--include="$(paste -sd , <<<"$packages")" "$SUITE" "$rootfs" "$MIRROR"; then
		tail -n 25 "$log" >&2
		die "debootstrap failed (or took over ${T_DEBOOTSTRAP}s); full log: $log"
	fi
	unmount_below "$rootfs"
	strip_rootfs "$rootfs"

	# --numeric-owner: keep the rootfs's own uids (postgres, redis) whatever the host's are.
	# If the stream breaks, the tag may exist with a partial rootfs: remove it.
	# shellcheck disable=SC2016 # $1.. belong to the inner bash
	if ! bounded "$T_IMPORT" "$WORK_DIR/import.log" bash -c 'set -o pipefail
		tar --numeric-owner --one-file-system -C "$1" -cf - . | docker import "${@:3}" - "$2"' \
		import "$rootfs" "$tag" \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'CMD ["bash"]' \
		--change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase with the packages of the course's offline stand-ins (tools/standins/standins.sh)\"" \
		--message "debootstrap --variant=minbase $SUITE"; then
		timeout "$T_DOCKER" docker rmi "$tag" >/dev/null 2>&1 || true
		cat "$WORK_DIR/import.log" >&2
		die "docker import of $rootfs failed"
	fi
	remove_rootfs "$rootfs"
	ROOTFS_IN_PROGRESS=
	say "base      $tag  built in $((SECONDS - started)) s"
}

# ---------------------------------------------------------------------------------------
# The stand-ins themselves.

# Hash of everything that makes up a stand-in image: the base, the official tag written
# into its label, and every file in its folder (names and contents).
standin_hash() {
	local name=$1
	{
		printf 'base=%s\nofficial=%s\n' "$BASE_TAG" "${OFFICIAL[$name]}"
		(cd "$STANDINS_DIR/$name" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
	} | short_hash
}

build_standin() {
	local name=$1 tag started log
	tag=course-standin/$name:$(standin_hash "$name")
	TAG[$name]=$tag
	if image_exists "$tag"; then
		say "$(printf '%-9s' "$name") $tag  cached"
		return
	fi
	started=$SECONDS
	log=$WORK_DIR/build-$name.log
	if ! bounded "$T_BUILD" "$log" env DOCKER_BUILDKIT=0 docker build \
		--build-arg "BASE=$BASE_TAG" --build-arg "OFFICIAL=${OFFICIAL[$name]}" \
		-t "$tag" "$STANDINS_DIR/$name"; then
		tail -n 25 "$log" >&2
		die "building $tag failed; full log: $log"
	fi
	say "$(printf '%-9s' "$name") $tag  built in $((SECONDS - started)) s"
}

write_offline_env() {
	local name tmp
	tmp=$(mktemp "$OFFLINE_ENV.XXXXXX")
	{
		say "# Written by tools/standins/standins.sh: local stand-ins for the images in stages/images.env."
		say "# Overrides stages/images.env on machines that reach no image registry. Do not edit."
		for name in "${NAMES[@]}"; do say "${VAR[$name]}=${TAG[$name]}"; done
	} >"$tmp"
	chmod 0644 "$tmp"
	mv "$tmp" "$OFFLINE_ENV"
	# Run through sudo: leave the file to the user who will run make and compose.
	if [ -n "${SUDO_UID:-}" ]; then chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$OFFLINE_ENV"; fi
}

# Older stand-ins (from before a folder or the package list changed) are kept, not deleted:
# another checkout may still use them. Say how to remove them.
hint_stale_images() {
	local current stale
	current=$(printf '%s\n' "$BASE_TAG" "${TAG[@]}")
	stale=$(timeout "$T_DOCKER" docker images --format '{{.Repository}}:{{.Tag}}' \
		--filter 'reference=course-standin/*' | grep -vxF -e "$current" || true)
	[ -n "$stale" ] || return 0
	say "$(wc -l <<<"$stale") older course-standin images are unused here; to remove them:"
	say "  docker rmi $(paste -sd ' ' <<<"$stale")"
}

# ---------------------------------------------------------------------------------------
# Smoke tests: each tools/standins/<name>/smoke.sh is sourced in a subshell with IMAGE set
# to the stand-in's tag and the helpers below. Everything they start carries the label
# course-standin.smoke=<id> and sits on one throwaway network; all of it is removed at exit.

SMOKE_NET=
SMOKE_TMP=

smoke_cleanup() {
	local ids
	ids=$(timeout "$T_DOCKER" docker ps -aq --filter "label=course-standin.smoke=$SMOKE_ID" || true)
	# shellcheck disable=SC2086
	[ -z "$ids" ] || timeout "$T_DOCKER" docker rm -fv $ids >/dev/null || true
	[ -z "$SMOKE_NET" ] || timeout "$T_DOCKER" docker network rm "$SMOKE_NET" >/dev/null 2>&1 || true
	[ -z "$SMOKE_TMP" ] || rm -rf "$SMOKE_TMP"
	SMOKE_ID=
}

# Container name of the smoke container started as NAME.
ctr() { printf '%s-%s\n' "$SMOKE_ID" "$1"; }

# smoke_run NAME [docker run options] IMAGE [command]: start a detached container, reachable
# from the others on the smoke network as NAME.
smoke_run() {
	local name=$1
	shift
	timeout "$T_DOCKER" docker run -d --name "$(ctr "$name")" --network "$SMOKE_NET" \
		--network-alias "$name" --label "course-standin.smoke=$SMOKE_ID" "$@" >/dev/null
}

# smoke_client [docker run options] IMAGE command: a one-off container on the smoke network.
smoke_client() {
	timeout "$T_DOCKER" docker run --rm --network "$SMOKE_NET" \
		--label "course-standin.smoke=$SMOKE_ID" "$@"
}

# smoke_exec NAME command: run a command in smoke container NAME.
smoke_exec() {
	local name=$1
	shift
	timeout 30 docker exec "$(ctr "$name")" "$@"
}

# The user and command name of PID 1 in smoke container NAME, e.g. "postgres postgres".
# shellcheck disable=SC2016 # expanded in the container
pid1() { smoke_exec "$1" bash -c 'echo "$(stat -c %U /proc/1) $(cat /proc/1/comm)"'; }

smoke_fail() {
	local id
	printf '  FAIL: %s\n' "$*" >&2
	for id in $(docker ps -aq --filter "label=course-standin.smoke=$SMOKE_ID"); do
		printf '  --- last log lines of %s\n' "$(docker inspect -f '{{.Name}}' "$id")" >&2
		timeout 10 docker logs --tail 15 "$id" 2>&1 | sed 's/^/  | /' >&2
	done
	exit 1
}

smoke_ok() { printf '  ok: %s\n' "$*"; }

# wait_until SECONDS WHAT command...: retry the command until it succeeds.
wait_until() {
	local limit=$1 what=$2 deadline=$((SECONDS + $1))
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] || smoke_fail "$what: not within ${limit}s"
		sleep 0.5
	done
	smoke_ok "$what"
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
	[ "$2" = "$3" ] || smoke_fail "$1: expected '$2', got '$3'"
	smoke_ok "$1"
}

# stop_within NAME SECONDS: `docker stop` (the image's STOPSIGNAL) must end the container
# within SECONDS with exit code 0, i.e. PID 1 handles the signal and shuts down cleanly.
stop_within() {
	local name=$1 limit=$2 started code
	started=$(date +%s.%N)
	timeout "$T_DOCKER" docker stop -t "$limit" "$(ctr "$name")" >/dev/null
	code=$(docker inspect -f '{{.State.ExitCode}}' "$(ctr "$name")")
	local took
	took=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	[ "$code" = 0 ] || smoke_fail "docker stop $name: exit code $code after ${took}s"
	smoke_ok "docker stop $name: exit code 0 after ${took}s"
}

smoke_all() {
	local name failed=() rc started
	SMOKE_ID=course-standin-smoke-$$
	SMOKE_NET=$SMOKE_ID
	SMOKE_TMP=$(mktemp -d)
	chmod 0755 "$SMOKE_TMP" # container users (postgres, nginx) read mounted files
	timeout "$T_DOCKER" docker network create --label "course-standin.smoke=$SMOKE_ID" "$SMOKE_NET" >/dev/null
	for name in "${NAMES[@]}"; do
		if [ ! -f "$STANDINS_DIR/$name/smoke.sh" ]; then
			say "smoke $name: no smoke.sh, skipped"
			continue
		fi
		say "smoke $name (${TAG[$name]}, stands in for ${OFFICIAL[$name]})"
		started=$SECONDS
		set +e
		(
			set -e
			# shellcheck disable=SC2034 # used by smoke.sh
			IMAGE=${TAG[$name]}
			mkdir -p "$SMOKE_TMP/$name"
			chmod 0755 "$SMOKE_TMP/$name"
			SMOKE_TMP=$SMOKE_TMP/$name
			# shellcheck disable=SC1090
			. "$STANDINS_DIR/$name/smoke.sh"
		)
		rc=$?
		set -e
		if [ "$rc" = 0 ]; then
			say "smoke $name: passed in $((SECONDS - started)) s"
		else
			say "smoke $name: FAILED"
			failed+=("$name")
		fi
		# Each stand-in's containers go before the next one starts (2 cores).
		local ids
		ids=$(timeout "$T_DOCKER" docker ps -aq --filter "label=course-standin.smoke=$SMOKE_ID")
		# shellcheck disable=SC2086
		[ -z "$ids" ] || timeout "$T_DOCKER" docker rm -fv $ids >/dev/null
	done
	smoke_cleanup
	[ "${#failed[@]}" = 0 ] || die "smoke test failed for: ${failed[*]}"
}

# ---------------------------------------------------------------------------------------

main() {
	local smoke=false arg started=$SECONDS name
	for arg; do
		case $arg in
			--smoke | smoke) smoke=true ;;
			-h | --help | help)
				usage
				exit 0
				;;
			*) die "unknown argument '$arg' (try --help)" ;;
		esac
	done

	command -v docker >/dev/null || die "docker is not installed"
	timeout "$T_DOCKER" docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
		die "cannot reach the Docker engine (is it running, may this user use it?)"
	[ -f "$IMAGES_ENV" ] || die "$IMAGES_ENV is missing"

	# One run at a time: two debootstraps of the same rootfs would trip over each other.
	mkdir -p "$WORK_DIR"
	exec 9>"$WORK_DIR/lock"
	flock -w "$T_LOCK" 9 || die "another tools/standins/standins.sh still holds $WORK_DIR/lock"

	load_standins
	ensure_base
	for name in "${NAMES[@]}"; do build_standin "$name"; done
	write_offline_env
	say "wrote ${OFFLINE_ENV#"$REPO_DIR"/} (${#NAMES[@]} stand-ins) in $((SECONDS - started)) s"
	hint_stale_images

	if $smoke; then
		smoke_all
		say "smoke tests passed; total $((SECONDS - started)) s"
	fi
}

main "$@"
