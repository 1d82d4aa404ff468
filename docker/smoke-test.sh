#!/usr/bin/env bash
# Container smoke test: build the image from the repository's Dockerfile with podman, run it
# the way a cluster would (non-root uid 10001, read-only root filesystem, no capabilities),
# wait for readiness, classify a text, read /metrics, then SIGTERM and check a clean exit
# within the drain bound. Cleans up its container and image tag on exit.
#
# Needs root and the Debian archive apt already uses (podman, debootstrap and runc are
# installed when missing). The base image debian:bookworm-slim is made locally with
# debootstrap from that archive and cached under $UFBD_SMOKE_CACHE (default /var/tmp/ufbd-smoke).
# Skips (exit 0, "SKIP:") only when podman cannot be installed.
# podman specifics follow ../shared/docs/containers.md; the Dockerfile itself stays standard.
# shellcheck disable=SC2016  # single-quoted bash -c bodies expand their own $1
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

START=$(date +%s)
SUITE=bookworm                                   # matches FROM debian:bookworm-slim
BASE_TAG=docker.io/library/debian:bookworm-slim
CACHE=${UFBD_SMOKE_CACHE:-/var/tmp/ufbd-smoke}
IMAGE=localhost/ufbd:smoke-$$
NAME=ufbd-smoke-$$
STOP_TIMEOUT=40                                  # > drain_timeout_s (30)
DRAIN_BOUND=35                                   # drain bound (30 s) + margin for podman
PASS=0 FAIL=0

log()  { echo "smoke: $*"; }
ok()   { PASS=$((PASS + 1)); echo "  ok   $*"; }
bad()  { FAIL=$((FAIL + 1)); echo "  FAIL $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
summary() { echo "smoke: $PASS passed, $FAIL failed ($(( $(date +%s) - START )) s)"; }
die()  { bad "$*"; summary; exit 1; }

if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then exec sudo -E "$0" "$@"; fi
    if ! command -v podman >/dev/null; then
        echo "SKIP: podman is not installed and cannot be installed without root"; exit 0
    fi
    echo "smoke: must run as root (podman runtime settings of this test need it)"; exit 1
fi

# --- tools -----------------------------------------------------------------------------------
need=()
for p in podman debootstrap runc curl python3; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } \
            >/tmp/ufbd-smoke-apt.log 2>&1; then
        tail -5 /tmp/ufbd-smoke-apt.log
        if ! command -v podman >/dev/null; then
            echo "SKIP: podman cannot be installed (apt-get failed, log: /tmp/ufbd-smoke-apt.log)"
            exit 0
        fi
        die "apt-get install ${need[*]} failed (log: /tmp/ufbd-smoke-apt.log)"
    fi
fi

WORK=$(mktemp -d /tmp/ufbd-smoke.XXXXXX)
cleanup() {
    podman --runtime runc rm -f -i "$NAME" >/dev/null 2>&1
    podman rmi -i "$IMAGE" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Settings that work in this sandbox (containers.md): no default ulimits, cgroupfs, runc.
printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager="cgroupfs"\n' > "$WORK/containers.conf"
export CONTAINERS_CONF=$WORK/containers.conf
PODMAN=(podman --runtime runc)

# --- base image (debootstrap from the archive apt uses; cached) ------------------------------
mirror() {   # first archive URI that carries $SUITE, from deb822 .sources or one-line .list files
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() { if (deb && has && uri != "") { print uri; found = 1; exit } deb = has = 0; uri = "" }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            tolower($1) == "types:"  { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
            tolower($1) == "uris:"   { uri = $2 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) has = 1 }
            END { if (!found) flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2 }'
    done
}
if podman image exists "$BASE_TAG"; then
    log "base image $BASE_TAG present"
else
    mkdir -p "$CACHE"
    if [ ! -s "$CACHE/$SUITE-slim-rootfs.tar" ]; then
        MIRROR=$(mirror | head -1)
        [ -n "$MIRROR" ] || die "no Debian '$SUITE' archive in /etc/apt/sources.list{,.d/}"
        log "debootstrap $SUITE from $MIRROR (cached in $CACHE)"
        rm -rf "$CACHE/rootfs.tmp"
        debootstrap --variant=minbase "$SUITE" "$CACHE/rootfs.tmp" "$MIRROR" \
            >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; die "debootstrap"; }
        # Trim it like the official -slim image: no .debs, docs, man pages or locales, and
        # dpkg told to skip them in later installs (so the reported image size is comparable).
        r=$CACHE/rootfs.tmp
        rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/usr/share/man/* \
               "$r"/usr/share/info/* "$r"/usr/share/locale/* "$r"/usr/share/groff/* "$r"/usr/share/lintian/*
        find "$r"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
        printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
            'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' \
            'path-exclude /usr/share/info/*' 'path-exclude /usr/share/lintian/*' \
            'path-exclude /usr/share/locale/*' > "$r"/etc/dpkg/dpkg.cfg.d/docker-slim
        tar -C "$r" -cf "$CACHE/$SUITE-slim-rootfs.tar.tmp" . \
            && mv "$CACHE/$SUITE-slim-rootfs.tar.tmp" "$CACHE/$SUITE-slim-rootfs.tar" && rm -rf "$r"
    fi
    podman import "$CACHE/$SUITE-slim-rootfs.tar" "$BASE_TAG" >/dev/null || die "podman import of the base image"
fi

# --- build -----------------------------------------------------------------------------------
log "building $IMAGE"
t0=$(date +%s)
# --format docker keeps HEALTHCHECK (the OCI image format has no field for it).
if timeout 900 podman build --isolation=chroot --network=host --format docker -t "$IMAGE" . \
        >"$WORK/build.log" 2>&1; then
    ok "image builds ($(( $(date +%s) - t0 )) s)"
else
    tail -30 "$WORK/build.log"; die "image build"
fi
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
log "image size: $size bytes ($(( size / 1024 / 1024 )) MiB)"
cfg=$(podman image inspect --format '{{.Config.User}}|{{.Config.StopSignal}}|{{json .Config.ExposedPorts}}|{{json .Config.Healthcheck}}' "$IMAGE" 2>/dev/null \
      || podman image inspect --format '{{.User}}|{{.Config.StopSignal}}|{{json .Config.ExposedPorts}}|{{json .HealthCheck}}' "$IMAGE")
check "image: user 10001, STOPSIGNAL SIGTERM, EXPOSE 8080, HEALTHCHECK ($cfg)" \
    bash -c '[[ $1 == 10001* && $1 == *"|SIGTERM|"* && $1 == *8080/tcp* && $1 == *health/live* ]]' _ "$cfg"

# --- run -------------------------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
env_args=(-e "UFBD_PORT=$PORT")
if [ ! -f models/sst2-minilm-fff/config.json ]; then
    log "models/sst2-minilm-fff is not in the tree: serving the fixture model in the image"
    env_args+=(-e UFBD_MODEL=/opt/ufbd/models/fixture-bert-text)
fi
"${PODMAN[@]}" run -d --name "$NAME" --network=host --read-only --user 10001 \
    --cap-drop=ALL --security-opt=no-new-privileges --health-interval=disable \
    "${env_args[@]}" "$IMAGE" >/dev/null 2>"$WORK/run.log" \
    || { cat "$WORK/run.log"; die "podman run"; }   # run.log: podman's systemd health-timer noise

check "root filesystem is read-only" \
    bash -c '[ "$(podman inspect --format "{{.HostConfig.ReadonlyRootfs}}" "$1")" = true ]' _ "$NAME"

ready=0
for _ in $(seq 240); do   # 120 s
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health/ready")" = 200 ]; then ready=1; break; fi
    [ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] || break
    sleep 0.5
done
if [ $ready = 1 ]; then ok "ready on port $PORT"; else
    podman logs "$NAME" 2>&1 | tail -20; die "not ready within 120 s"
fi
pid=$(podman inspect --format '{{.State.Pid}}' "$NAME")
check "process runs as uid 10001 (host pid $pid)" \
    bash -c '[ "$(stat -c %u /proc/$1)" = 10001 ]' _ "$pid"
check "/health/live 200" bash -c '[ "$(curl -s -o /dev/null -w "%{http_code}" "$1/health/live")" = 200 ]' _ "$URL"
check "log says 'ufbd: listening on http://0.0.0.0:$PORT' and 'ufbd: ready'" \
    bash -c 'l=$(podman logs "$1" 2>&1); [[ $l == *"ufbd: listening on http://0.0.0.0:$2"* && $l == *"ufbd: ready"* ]]' _ "$NAME" "$PORT"
check "HEALTHCHECK command reports healthy" "${PODMAN[@]}" healthcheck run "$NAME"

labels=$(curl -sf "$URL/info" | python3 -c '
import json, sys
d = json.load(sys.stdin)
def find(o):
    if isinstance(o, dict):
        if isinstance(o.get("labels"), list) and o["labels"]: return o["labels"]
        for v in o.values():
            r = find(v)
            if r: return r
    return None
print("\n".join(str(x) for x in (find(d) or [])))')
check "/info lists labels (${labels//$'\n'/ })" test -n "$labels"
resp=$(curl -sf "$URL/classify" -H 'Content-Type: application/json' \
           -d '{"inputs": "a gorgeous, witty, seductive movie ."}')
label=$(printf '%s' "$resp" | python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["label"])' 2>/dev/null)
check "POST /classify -> label '$label' is one of the model's labels" \
    bash -c '[ -n "$1" ] && grep -qxF -- "$1" <<< "$2"' _ "$label" "$labels"
metrics=$(curl -sf "$URL/metrics")
check "/metrics has ufbd_requests_total for /classify" \
    bash -c 'grep -qE "^ufbd_requests_total\{route=\"classify\",status=\"200\"\} [1-9]" <<< "$1"' _ "$metrics"
check "/metrics ufbd_ready 1" bash -c 'grep -qE "^ufbd_ready 1" <<< "$1"' _ "$metrics"

# --- SIGTERM ---------------------------------------------------------------------------------
# A request still uploading its body when SIGTERM arrives must be answered (drain).
python3 -c 'import json; print(json.dumps({"inputs": "a gorgeous , witty movie . " * 8000, "truncate": True}))' \
    > "$WORK/body.json"
curl -s -o "$WORK/inflight.json" -w '%{http_code}' --limit-rate 100k "$URL/classify" \
    -H 'Content-Type: application/json' --data-binary @"$WORK/body.json" > "$WORK/inflight.code" &
curl_pid=$!
sleep 0.5
t0=$(date +%s.%N)
"${PODMAN[@]}" stop -t "$STOP_TIMEOUT" "$NAME" >/dev/null 2>&1
elapsed=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
wait "$curl_pid"
check "SIGTERM: request uploading at SIGTERM answered $(cat "$WORK/inflight.code") (want 200)" \
    bash -c '[ "$(cat "$1")" = 200 ] && grep -q "\"label\"" "$2"' _ "$WORK/inflight.code" "$WORK/inflight.json"
check "SIGTERM: exit code $code (want 0)" test "$code" = 0
check "SIGTERM: stopped in $elapsed s (bound $DRAIN_BOUND s)" \
    python3 -c "import sys; sys.exit(not $elapsed <= $DRAIN_BOUND)"

summary
[ "$FAIL" = 0 ]
