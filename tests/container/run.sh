#!/usr/bin/env bash
# The real container test, behind `make container-test`.
#
# No image registry is reachable here, so the base image is built locally: a
# debootstrap of Debian bookworm (which ships Python 3.11) with python3-venv,
# imported as feedbot-base:bookworm. Then: docker build on that base, run the
# image with the sample archive mounted, wait for its HEALTHCHECK, fetch a feed,
# check it runs as non-root, `docker stop` (SIGTERM) and expect exit status 0.
#
# Needs root (dockerd, debootstrap). Installs docker.io and debootstrap when they
# are missing, and starts dockerd when no engine answers (stopping it again at the
# end). When the machine cannot run containers at all, it prints one line saying
# why, "container-test: skipped: ...", and exits 0, so CI can call it
# unconditionally; FEEDBOT_CONTAINER_TEST_REQUIRED=1 turns those skips into failures.
#
# Environment:
#   FEEDBOT_CONTAINER_CACHE   where the base rootfs tarball is kept (default /var/cache/feedbot-test)
#   FEEDBOT_DEBIAN_MIRROR     Debian mirror for debootstrap (default: the one apt is configured with)
#   FEEDBOT_CONTAINER_TEST_REQUIRED=1   fail instead of skipping
#   FEEDBOT_DOCKERD_FLAGS     start dockerd with these flags only (default: try overlay2,
#                             then fuse-overlayfs, vfs, vfs without iptables and bridge)
#   FEEDBOT_KEEP_DOCKERD=1    leave a dockerd this script started running
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

CACHE=${FEEDBOT_CONTAINER_CACHE:-/var/cache/feedbot-test}
SUITE=bookworm
PLAIN_BASE=feedbot-base:$SUITE-debootstrap
BASE=feedbot-base:$SUITE
IMAGE=feedbot:test
TARBALL=$CACHE/$SUITE-python3-rootfs.tar
DOCKERD_LOG=/tmp/feedbot-dockerd.log
DOCKERD_PID=
CONTAINER=
VOLUME=
NET_ARGS=()
T0=$EPOCHREALTIME
mkdir -p "$CACHE"

say() { printf 'container-test: %s\n' "$*"; }
skip() {
    if [ "${FEEDBOT_CONTAINER_TEST_REQUIRED:-0}" = 1 ]; then
        say "FAILED (skips not allowed): $*" >&2
        exit 1
    fi
    say "skipped: $*"
    exit 0
}
fail() { say "FAILED: $*" >&2; exit 1; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

cleanup() {
    local status=$?
    if [ -n "$CONTAINER" ]; then docker rm -f -v "$CONTAINER" >/dev/null 2>&1 || true; fi
    if [ -n "$VOLUME" ]; then docker volume rm "$VOLUME" >/dev/null 2>&1 || true; fi
    if [ -n "$DOCKERD_PID" ] && [ "${FEEDBOT_KEEP_DOCKERD:-0}" != 1 ]; then
        kill "$DOCKERD_PID" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    fi
    exit "$status"
}
trap cleanup EXIT

# --- 1. tools ---------------------------------------------------------------------
if [ "$(id -u)" != 0 ] && ! docker info >/dev/null 2>&1; then
    skip "not root and no Docker engine answers: cannot start dockerd or run debootstrap"
fi
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
           >/tmp/feedbot-container-apt.log 2>&1; then
        skip "apt-get install ${missing[*]} failed (see /tmp/feedbot-container-apt.log)"
    fi
fi
command -v docker >/dev/null || skip "no docker client on PATH"

# --- 2. the engine ----------------------------------------------------------------
start_dockerd() {  # flags...; 0 when an engine answers within 30 s
    : >"$DOCKERD_LOG"
    dockerd "$@" >>"$DOCKERD_LOG" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 60); do
        if docker info >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then break; fi
        sleep 0.5
    done
    kill "$DOCKERD_PID" 2>/dev/null || true
    wait "$DOCKERD_PID" 2>/dev/null || true
    DOCKERD_PID=
    return 1
}
dockerd_error() {
    grep -E 'level=(fatal|error)|failed to start daemon' "$DOCKERD_LOG" | tail -n1 | sed 's/^.*msg=//' | cut -c1-200
}

T=$EPOCHREALTIME
if docker info >/dev/null 2>&1; then
    say "using the running Docker engine"
else
    attempts=("" "--storage-driver=vfs")
    if command -v fuse-overlayfs >/dev/null && [ -e /dev/fuse ]; then
        attempts=("" "--storage-driver=fuse-overlayfs" "--storage-driver=vfs")
    fi
    attempts+=("--storage-driver=vfs --iptables=false --bridge=none")
    if [ -n "${FEEDBOT_DOCKERD_FLAGS:-}" ]; then attempts=("$FEEDBOT_DOCKERD_FLAGS"); fi
    started=
    last_error=
    for flags in "${attempts[@]}"; do
        # shellcheck disable=SC2086  # flags are words on purpose
        if start_dockerd $flags; then
            started=$flags
            break
        fi
        last_error=$(dockerd_error)
        say "dockerd ${flags:-(defaults)} did not start: ${last_error:-no error logged}"
    done
    [ -n "$DOCKERD_PID" ] || skip "dockerd cannot start here: ${last_error:-see $DOCKERD_LOG}"
    say "started dockerd ${started:-(defaults)} in $(elapsed "$T") s (log: $DOCKERD_LOG)"
    case $started in *--bridge=none*) NET_ARGS=(--network host) ;; esac
fi
say "engine: $(docker version --format 'server {{.Server.Version}}, client {{.Client.Version}}' 2>/dev/null), storage $(docker info --format '{{.Driver}}')"

# --- 3. the base image: debootstrap once, cache the tarball -------------------------
debian_mirror() {
    local uri
    uri=$(grep -hE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | awk '{ print $2 }' | grep -E '/debian/?$' | head -n1 || true)
    if [ -z "$uri" ]; then
        uri=$(grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
              | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ' || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

T=$EPOCHREALTIME
if ! docker image inspect "$PLAIN_BASE" >/dev/null 2>&1; then
    if [ ! -s "$TARBALL" ]; then
        mirror=${FEEDBOT_DEBIAN_MIRROR:-$(debian_mirror)}
        say "debootstrap $SUITE from $mirror into $CACHE (once; the tarball is kept)"
        mkdir -p "$CACHE"
        rootfs=$CACHE/rootfs.$$
        rm -rf "$rootfs"
        if ! debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
                "$SUITE" "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1; then
            rm -rf "$rootfs"
            skip "debootstrap $SUITE from $mirror failed: $(tail -n1 "$CACHE/debootstrap.log")"
        fi
        chroot "$rootfs" apt-get clean
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
        tar -C "$rootfs" --numeric-owner -cf "$TARBALL.tmp" .
        mv "$TARBALL.tmp" "$TARBALL"
        rm -rf "$rootfs"
        say "debootstrap + tarball: $(elapsed "$T") s, $(du -h "$TARBALL" | cut -f1)"
    fi
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        "$TARBALL" "$PLAIN_BASE" >/dev/null
fi
# Certificates the host trusts beyond Debian's (a TLS-inspecting egress proxy, say)
# go into the base too, so pip inside the build trusts what the host trusts.
extra_cas=(/usr/local/share/ca-certificates/*.crt)
if [ -e "${extra_cas[0]}" ]; then
    ctx=$(mktemp -d)
    cp "${extra_cas[@]}" "$ctx/"
    printf 'FROM %s\nCOPY *.crt /usr/local/share/ca-certificates/\nRUN update-ca-certificates\n' \
        "$PLAIN_BASE" >"$ctx/Dockerfile"
    if ! docker build -q "${NET_ARGS[@]}" -t "$BASE" "$ctx" >"$CACHE/base-build.log" 2>&1; then
        rm -rf "$ctx"
        skip "the engine cannot run a build step: $(grep -v '^ ---\|^Step\|^Sending' "$CACHE/base-build.log" | tail -n1 | cut -c1-200)"
    fi
    rm -rf "$ctx"
else
    docker tag "$PLAIN_BASE" "$BASE"
fi
T_BASE=$(elapsed "$T")
say "base image $BASE ready in $T_BASE s"

# Can containers run, and reach PyPI (the build's pip needs it)?
probe='import socket; socket.create_connection(("pypi.org", 443), timeout=10).close()'
if ! out=$(docker run --rm "${NET_ARGS[@]}" "$BASE" python3 -c "$probe" 2>&1); then
    if [ "${#NET_ARGS[@]}" -eq 0 ] && docker run --rm --network host "$BASE" python3 -c "$probe" >/dev/null 2>&1; then
        say "bridge networking cannot reach PyPI; using --network host"
        NET_ARGS=(--network host)
    else
        skip "a container cannot reach pypi.org:443: $(echo "$out" | tail -n1 | cut -c1-200)"
    fi
fi

# --- 4. the image ------------------------------------------------------------------
T=$EPOCHREALTIME
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
say "docker build${NET_ARGS[*]:+ ${NET_ARGS[*]}} --build-arg BASE_IMAGE=$BASE -t $IMAGE ."
if ! docker build "${NET_ARGS[@]}" --build-arg "BASE_IMAGE=$BASE" --build-arg "VERSION=$version" \
        -t "$IMAGE" . >"$CACHE/build.log" 2>&1; then
    tail -n 40 "$CACHE/build.log" >&2
    fail "docker build failed (log: $CACHE/build.log)"
fi
T_BUILD=$(elapsed "$T")
say "image built in $T_BUILD s, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')"

inspect() { docker image inspect -f "$1" "$IMAGE"; }
user=$(inspect '{{.Config.User}}')
case ${user%%:*} in ""|0|root) fail "image runs as root (USER '$user')" ;; esac
[ "$(inspect '{{json .Config.Entrypoint}}')" = '["feedbot"]' ] || fail "ENTRYPOINT is $(inspect '{{json .Config.Entrypoint}}'), expected [\"feedbot\"]"
[ "$(inspect '{{json .Config.Cmd}}')" = '["run"]' ] || fail "CMD is $(inspect '{{json .Config.Cmd}}'), expected [\"run\"]"
inspect '{{json .Config.Volumes}}' | grep -q '"/data"' || fail "no VOLUME /data"
inspect '{{json .Config.ExposedPorts}}' | grep -q '"8080/tcp"' || fail "no EXPOSE 8080"
[ "$(inspect '{{if .Config.Healthcheck}}yes{{end}}')" = yes ] || fail "no HEALTHCHECK"

# --- 5. run it -----------------------------------------------------------------------
T=$EPOCHREALTIME
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CONTAINER=feedbot-test-$$
VOLUME=feedbot-test-data-$$
docker volume create "$VOLUME" >/dev/null
run_args=(--detach --name "$CONTAINER" -v "$REPO/examples/archive:/archive:ro" -v "$VOLUME:/data"
          --health-interval 1s --health-start-period 60s)  # the image's check, run more often
if [ "${#NET_ARGS[@]}" -gt 0 ]; then
    run_args+=("${NET_ARGS[@]}" -e "FEEDBOT_SERVER__PORT=$port")
else
    run_args+=(-p "127.0.0.1:$port:8080")
fi
docker run "${run_args[@]}" "$IMAGE" >/dev/null

show_logs() { docker logs --tail 40 "$CONTAINER" 2>&1 | sed 's/^/  | /' >&2; }
health=
for _ in $(seq 1 120); do
    health=$(docker inspect -f '{{.State.Status}}/{{.State.Health.Status}}' "$CONTAINER")
    case $health in
        running/healthy) break ;;
        exited/*|dead/*) show_logs; fail "the container exited before it was healthy ($(docker inspect -f '{{.State.ExitCode}}' "$CONTAINER"))" ;;
    esac
    sleep 0.5
done
if [ "$health" != running/healthy ]; then
    show_logs
    last=$(docker inspect -f '{{with .State.Health}}{{range .Log}}{{.Output}}{{end}}{{end}}' "$CONTAINER" | tail -n1 | cut -c1-200)
    fail "not healthy after 60 s ($health); last health check said: ${last:-nothing}"
fi
T_HEALTHY=$(elapsed "$T")
say "healthy after $T_HEALTHY s (port $port)"

fetch() {  # path -> body on stdout; fails unless 200
    python3 - "http://127.0.0.1:$port$1" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
    if response.status != 200:
        sys.exit(f"{sys.argv[1]}: HTTP {response.status}")
    sys.stdout.write(response.read().decode("utf-8", "replace"))
PY
}
fetch /healthz >/dev/null || fail "GET /healthz from the host failed"
entries=0
for _ in $(seq 1 60); do  # the first poll of the sample archive takes a moment
    if body=$(fetch /feeds/all.atom 2>/dev/null); then
        entries=$(grep -o '<entry' <<<"$body" | wc -l)
        [ "$entries" -gt 0 ] && break
    fi
    sleep 0.5
done
[ "$entries" -gt 0 ] || { show_logs; fail "GET /feeds/all.atom gave no entries within 30 s"; }
say "GET /feeds/all.atom: 200, $entries entries"

uid=$(docker exec "$CONTAINER" sh -c "awk '/^Uid:/ { print \$2 }' /proc/1/status")
if [ -z "$uid" ] || [ "$uid" = 0 ]; then fail "feedbot (PID 1) runs as uid '$uid'"; fi
db_uid=$(docker exec "$CONTAINER" sh -c 'stat -c %u /data/feedbot.db' 2>/dev/null || true)
[ "$db_uid" = "$uid" ] || fail "/data/feedbot.db missing or not owned by feedbot's uid $uid (got '$db_uid')"
say "PID 1 runs as uid $uid; the SQLite store is on the /data volume"

# --- 6. SIGTERM ----------------------------------------------------------------------
T=$EPOCHREALTIME
docker stop -t 30 "$CONTAINER" >/dev/null
T_STOP=$(elapsed "$T")
code=$(docker inspect -f '{{.State.ExitCode}}' "$CONTAINER")
if [ "$code" != 0 ]; then show_logs; fail "exit status $code after docker stop (SIGTERM), expected 0"; fi
awk -v t="$T_STOP" 'BEGIN { exit !(t <= 15) }' || fail "docker stop took $T_STOP s (shutdown_timeout is 10 s)"
if docker logs "$CONTAINER" 2>&1 | grep -q '^Traceback'; then show_logs; fail "a traceback in the container's log"; fi
say "docker stop: exit status 0 in $T_STOP s"

say "timings: base ${T_BASE} s, build ${T_BUILD} s, healthy ${T_HEALTHY} s, stop ${T_STOP} s, total $(elapsed "$T0") s"
say "1 passed, 0 failed"
