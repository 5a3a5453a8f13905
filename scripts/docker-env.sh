#!/usr/bin/env bash
# Bring up what the image tests need on a machine with no container registry reachable:
#   - Debian's docker.io (engine + client), docker-registry, debootstrap
#   - dockerd, started in the background when no engine answers (log: /tmp/mlcycle-dockerd.log)
#   - a local registry on 127.0.0.1:5000 (log: /tmp/mlcycle-registry.log)
#   - the base image `python:3.11-slim`, made locally from a Debian bookworm root fs
#     (debootstrap --variant=minbase from the mirror apt uses), cached as a tarball
#     under /var/cache/mlcycle so that reruns only `docker import` it, if even that.
# Idempotent; runs as root with no stdin; exports nothing (tests use the default socket).
# Environment: MLCYCLE_BASE_IMAGE (default python:3.11-slim), MLCYCLE_REGISTRY_PORT (5000),
#              MLCYCLE_DOCKER_WAIT (seconds to wait for an engine, default 60).
set -euo pipefail

BASE_IMAGE=${MLCYCLE_BASE_IMAGE:-python:3.11-slim}
REGISTRY_PORT=${MLCYCLE_REGISTRY_PORT:-5000}
WAIT=${MLCYCLE_DOCKER_WAIT:-60}
CACHE=/var/cache/mlcycle
SUITE=bookworm
ROOTFS_TAR=$CACHE/rootfs-$SUITE-python3-$(dpkg --print-architecture).tar
STATE=/run/mlcycle
export DEBIAN_FRONTEND=noninteractive

say() { printf 'docker-env: %s\n' "$*"; }
die() { printf 'docker-env: error: %s\n' "$*" >&2; exit 1; }
started=$SECONDS

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts dockerd)"
mkdir -p "$CACHE" "$STATE"

# --- packages ------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    # One apt-get at a time: `make test` runs the set-up steps side by side.
    flock "${APT_LOCK:-/var/lock/mlcycle-apt.lock}" sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"' apt-get "${need[@]}" </dev/null >/dev/null
else
    say "packages present (docker.io, docker-registry, debootstrap)"
fi

# --- engine --------------------------------------------------------------------------
engine_up() { timeout 10 docker info >/dev/null 2>&1; }
if engine_up; then
    say "docker engine already answers"
else
    say "starting dockerd (log: /tmp/mlcycle-dockerd.log)"
    # containerd is started by dockerd itself when none runs. overlay2 works here.
    nohup dockerd --storage-driver=overlay2 --host=unix:///var/run/docker.sock \
        </dev/null >/tmp/mlcycle-dockerd.log 2>&1 &
    echo $! >"$STATE/dockerd.pid"
    for _ in $(seq "$WAIT"); do
        engine_up && break
        kill -0 "$(cat "$STATE/dockerd.pid")" 2>/dev/null || {
            tail -20 /tmp/mlcycle-dockerd.log >&2
            die "dockerd exited; see /tmp/mlcycle-dockerd.log"
        }
        sleep 1
    done
    engine_up || { tail -20 /tmp/mlcycle-dockerd.log >&2; die "no engine after ${WAIT}s"; }
    say "dockerd up (pid $(cat "$STATE/dockerd.pid"))"
fi

# --- local registry on 127.0.0.1 only ------------------------------------------------
registry_up() { timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$REGISTRY_PORT" 2>/dev/null; }
if registry_up; then
    say "registry already answers on 127.0.0.1:$REGISTRY_PORT"
else
    mkdir -p "$CACHE/registry"
    cat >"$STATE/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $CACHE/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
EOF
    say "starting docker-registry on 127.0.0.1:$REGISTRY_PORT (log: /tmp/mlcycle-registry.log)"
    nohup docker-registry serve "$STATE/registry.yml" </dev/null >/tmp/mlcycle-registry.log 2>&1 &
    echo $! >"$STATE/registry.pid"
    for _ in $(seq 20); do registry_up && break; sleep 0.5; done
    registry_up || { tail -20 /tmp/mlcycle-registry.log >&2; die "registry did not start"; }
fi

# --- base image ----------------------------------------------------------------------
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "base image $BASE_IMAGE present"
else
    if [ ! -s "$ROOTFS_TAR" ]; then
        # The mirror apt itself uses (deb822 sources first, then sources.list).
        mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
            | awk '{print $2}' | grep -v security | head -1 || true)
        if [ -z "$mirror" ]; then
            mirror=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null \
                | awk '{print $2}' | grep -v security | head -1 || true)
        fi
        mirror=${mirror:-http://deb.debian.org/debian}
        say "debootstrap $SUITE (minbase + python3) from $mirror"
        work=$(mktemp -d /var/tmp/mlcycle-rootfs.XXXXXX)
        trap 'rm -rf "$work"' EXIT
        debootstrap --variant=minbase --components=main \
            --include=python3,python3-venv,python3-pip,ca-certificates \
            "$SUITE" "$work/root" "$mirror" >/tmp/mlcycle-debootstrap.log 2>&1 \
            || { tail -20 /tmp/mlcycle-debootstrap.log >&2; die "debootstrap failed"; }
        # Slim it: package lists, caches, docs and man pages are not needed in an image.
        rm -rf "$work"/root/var/cache/apt/archives/*.deb "$work"/root/var/lib/apt/lists/* \
            "$work"/root/usr/share/doc/* "$work"/root/usr/share/man/* \
            "$work"/root/usr/share/locale/* "$work"/root/var/log/*.log
        # `python` as in the official python images.
        ln -sf python3 "$work/root/usr/bin/python"
        tar -C "$work/root" --numeric-owner -cf "$ROOTFS_TAR.tmp" .
        mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
        rm -rf "$work"
        trap - EXIT
    else
        say "using cached root fs $ROOTFS_TAR"
    fi
    say "docker import $BASE_IMAGE"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        "$ROOTFS_TAR" "$BASE_IMAGE" >/dev/null
    docker run --rm "$BASE_IMAGE" python --version >/dev/null \
        || die "the imported base image does not run python"
fi

say "ready: engine $(docker version --format '{{.Server.Version}}'), registry" \
    "127.0.0.1:$REGISTRY_PORT, base $BASE_IMAGE ($((SECONDS - started)) s)"
