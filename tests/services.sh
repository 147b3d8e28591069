#!/usr/bin/env bash
# Real services for the remediator test suite, installed with apt and run on loopback only.
#
#   bash tests/services.sh up       install what is missing, start what is not answering
#   bash tests/services.sh down     stop exactly the processes this script started (by PID)
#   bash tests/services.sh status   one line per service: up/down (exit 1 if any is down)
#   bash tests/services.sh env      print the env file the test suite loads
#
# State lives in ${REMEDIATOR_SERVICES_DIR:-/tmp/remediator-services} (kept short because of the
# unix-socket path length limit). Runs as root on Debian 12; no systemd is used or needed.
#
# Safety rules enforced here:
#   * dockerd always runs with --bridge=none --iptables=false --ip6tables=false --ip-masq=false
#     on its own socket/data-root/exec-root; /var/run/docker.sock is never touched.
#   * Redis and PostgreSQL listen on 127.0.0.1 only.
#   * Only processes whose PIDs this script recorded are ever signalled; only containers labelled
#     remediator.test=1 are ever removed.
set -euo pipefail

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

DIR="${REMEDIATOR_SERVICES_DIR:-/tmp/remediator-services}"
PIDS="$DIR/pids"
LOGS="$DIR/logs"
DOCKER_SOCK="$DIR/docker/docker.sock"
DOCKER_HOST_URL="unix://$DOCKER_SOCK"
REDIS_PORT=16379
PG_PORT=15432
PG_USER=remediator
PG_PASSWORD=remediator
PG_DB=remediator
TEST_IMAGE=remediator-test-busybox:latest
TEST_LABEL=remediator.test=1
APT_PACKAGES=(docker.io redis-server postgresql prometheus prometheus-alertmanager busybox-static)
RABBIT_AMQP_PORT=15673
RABBIT_HTTP_PORT=15674
RABBIT_DIST_PORT=15675
RABBIT_EPMD_PORT=15676
RABBIT_USER=remediator
RABBIT_PASSWORD=remediator

log() { printf 'services.sh: %s\n' "$*" >&2; }
die() {
    printf 'services.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat >&2 <<EOF
usage: $0 {up|down|status|env}
  up      install missing packages (apt), start dockerd/redis/postgres on loopback, build test image
  down    stop only the processes recorded in $PIDS (containers labelled $TEST_LABEL removed first)
  status  one line per service (exit 1 if any is down)
  env     print $DIR/env
EOF
}

# ---------------------------------------------------------------------------------------------
# Binaries
# ---------------------------------------------------------------------------------------------

# Prefer the CLI shipped with docker.io (matches the daemon's API version) over any other
# docker CLI that may be earlier on PATH.
docker_cli() {
    if [[ -x /usr/bin/docker ]]; then
        echo /usr/bin/docker
    else
        command -v docker || true
    fi
}

initdb_bin() {
    local found
    found=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1 || true)
    echo "$found"
}

is_static() {
    # ldd (libc-bin, always present) says "not a dynamic executable" for static binaries.
    local out
    out=$(LC_ALL=C ldd "$1" 2>&1 || true)
    [[ "$out" == *"not a dynamic executable"* || "$out" == *"statically linked"* ]]
}

static_busybox() {
    local candidate
    for candidate in /bin/busybox /usr/bin/busybox; do
        if [[ -x "$candidate" ]] && is_static "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    return 0
}

missing_binaries() {
    local name
    for name in dockerd redis-server redis-cli prometheus promtool prometheus-alertmanager amtool; do
        command -v "$name" >/dev/null 2>&1 || echo "$name"
    done
    [[ -n "$(docker_cli)" ]] || echo "docker"
    [[ -n "$(initdb_bin)" ]] || echo "initdb"
    [[ -n "$(static_busybox)" ]] || echo "busybox(static)"
}

ensure_packages() {
    local missing
    missing=$(missing_binaries | tr '\n' ' ')
    if [[ -z "${missing// /}" ]]; then
        log "packages: all binaries present"
        return 0
    fi
    log "packages: missing ${missing}- installing with apt: ${APT_PACKAGES[*]}"
    # Keep package maintainer scripts from starting system-wide daemons (docker on
    # /var/run/docker.sock, postgres on 5432, ...): the standard Debian policy-rc.d hook.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\n# temporary, created by remediator tests/services.sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        created_policy=1
        # shellcheck disable=SC2064
        trap "rm -f '$policy'" EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"
    if ((created_policy)); then
        rm -f "$policy"
        trap - EXIT
    fi
    missing=$(missing_binaries | tr '\n' ' ')
    [[ -z "${missing// /}" ]] || die "still missing after apt install: $missing"
    log "packages: installed"
}

# ---------------------------------------------------------------------------------------------
# PID bookkeeping: a recorded PID is only trusted if the process is alive AND its command name
# matches what we started (guards against PID reuse).
# ---------------------------------------------------------------------------------------------

read_pid() {
    local file="$PIDS/$1.pid" pid
    [[ -s "$file" ]] || return 1
    pid=$(head -n 1 "$file" | tr -dc '0-9')
    [[ -n "$pid" ]] || return 1
    echo "$pid"
}

pid_alive() { # pid; zombies count as gone (PID 1 may be slow to reap them)
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null || true)
    stat=${stat##*) }
    [[ -n "$stat" && "${stat:0:1}" != Z && "${stat:0:1}" != X ]]
}

pid_is() { # pid expected-comm
    local comm
    pid_alive "$1" || return 1
    comm=$(cat "/proc/$1/comm" 2>/dev/null || true)
    [[ "$comm" == "$2" ]]
}

recorded_alive() { # name expected-comm
    local pid
    pid=$(read_pid "$1") || return 1
    pid_is "$pid" "$2"
}

stop_pid() { # name pid expected-comm signal timeout-seconds
    local name=$1 pid=$2 comm=$3 sig=$4 timeout=$5 i
    if ! pid_is "$pid" "$comm"; then
        return 0
    fi
    log "$name: stopping pid $pid (SIG$sig)"
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        pid_is "$pid" "$comm" || return 0
        sleep 0.1
    done
    log "$name: pid $pid still alive after ${timeout}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_is "$pid" "$comm" || return 0
        sleep 0.1
    done
    die "$name: pid $pid did not exit"
}

log_tail() { # file
    if [[ -f "$1" ]]; then
        printf -- '--- last lines of %s ---\n' "$1" >&2
        tail -n 25 "$1" >&2 || true
        printf -- '--- end of %s ---\n' "$1" >&2
    fi
}

# ---------------------------------------------------------------------------------------------
# dockerd
# ---------------------------------------------------------------------------------------------

docker_cmd() { "$(docker_cli)" -H "$DOCKER_HOST_URL" "$@"; }

docker_answers() {
    [[ -S "$DOCKER_SOCK" ]] || return 1
    timeout 10 "$(docker_cli)" -H "$DOCKER_HOST_URL" info --format '{{.ServerVersion}}' \
        >/dev/null 2>&1
}

start_docker() {
    if docker_answers; then
        log "dockerd: already answering on $DOCKER_HOST_URL"
        return 0
    fi
    local pid
    if recorded_alive dockerd dockerd; then
        pid=$(read_pid dockerd)
        log "dockerd: pid $pid is running but not answering yet; waiting"
    else
        rm -f "$PIDS/dockerd.pid"
        mkdir -p "$DIR/docker/root" "$DIR/docker/exec"
        log "dockerd: starting (socket $DOCKER_SOCK, log $LOGS/dockerd.log)"
        # setsid: own session, so the daemon outlives this script and its terminal.
        setsid dockerd \
            --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
            --host "$DOCKER_HOST_URL" \
            --data-root "$DIR/docker/root" \
            --exec-root "$DIR/docker/exec" \
            --pidfile "$PIDS/dockerd.pid" \
            </dev/null >>"$LOGS/dockerd.log" 2>&1 9>&- &
        pid=$!
    fi
    local deadline=$((SECONDS + 60))
    until docker_answers; do
        # Not pid_is: right after the fork the child's comm is still bash/setsid, not dockerd.
        if ! pid_alive "$pid"; then
            log_tail "$LOGS/dockerd.log"
            die "dockerd: exited during startup (see $LOGS/dockerd.log)"
        fi
        if ((SECONDS >= deadline)); then
            log_tail "$LOGS/dockerd.log"
            die "dockerd: not answering on $DOCKER_HOST_URL after 60s (pid $pid still running)"
        fi
        sleep 0.2
    done
    # dockerd writes its own --pidfile; make sure it is there for `down`.
    [[ -s "$PIDS/dockerd.pid" ]] || echo "$pid" >"$PIDS/dockerd.pid"
    log "dockerd: up (pid $(read_pid dockerd))"
}

ensure_test_image() {
    if docker_cmd image inspect "$TEST_IMAGE" >/dev/null 2>&1; then
        log "image: $TEST_IMAGE present"
        return 0
    fi
    local ctx="$DIR/image" busybox
    busybox=$(static_busybox)
    [[ -n "$busybox" ]] || die "image: no static busybox found"
    log "image: building $TEST_IMAGE from $busybox (legacy builder, no registry)"
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp "$busybox" "$ctx/busybox"
    cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
LABEL remediator.test="1"
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
EOF
    # --network=none: the build's RUN container gets no network (and none is needed).
    if ! DOCKER_BUILDKIT=0 docker_cmd build --network=none --force-rm --pull=false \
        -t "$TEST_IMAGE" "$ctx" >"$LOGS/image-build.log" 2>&1; then
        log_tail "$LOGS/image-build.log"
        die "image: docker build failed (see $LOGS/image-build.log)"
    fi
    log "image: built $TEST_IMAGE"
}

# ---------------------------------------------------------------------------------------------
# redis
# ---------------------------------------------------------------------------------------------

redis_answers() {
    [[ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true)" == PONG ]]
}

start_redis() {
    if redis_answers; then
        if recorded_alive redis redis-server; then
            log "redis: already answering on 127.0.0.1:$REDIS_PORT"
        else
            log "redis: something not started by this script answers on 127.0.0.1:$REDIS_PORT;" \
                "using it ('down' will not stop it)"
        fi
        return 0
    fi
    if ! recorded_alive redis redis-server; then
        rm -f "$PIDS/redis.pid"
        mkdir -p "$DIR/redis"
        log "redis: starting on 127.0.0.1:$REDIS_PORT (log $LOGS/redis.log)"
        redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
            --daemonize yes --pidfile "$PIDS/redis.pid" --dir "$DIR/redis" \
            --logfile "$LOGS/redis.log" 9>&-
    fi
    local deadline=$((SECONDS + 30))
    until redis_answers; do
        if ((SECONDS >= deadline)); then
            log_tail "$LOGS/redis.log"
            die "redis: no PONG on 127.0.0.1:$REDIS_PORT after 30s"
        fi
        sleep 0.1
    done
    log "redis: up (pid $(read_pid redis || echo '?'))"
}

# ---------------------------------------------------------------------------------------------
# postgres
# ---------------------------------------------------------------------------------------------

pg_bin() { dirname "$(initdb_bin)"; }

pg_ready_for_tests() {
    PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5 timeout 10 "$(pg_bin)/psql" \
        -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -XAtqc 'SELECT 1' \
        >/dev/null 2>&1
}

pg_answers() {
    timeout 10 "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 5 >/dev/null 2>&1
}

pg_admin_psql() { # as the postgres superuser, over the private unix socket (peer auth)
    runuser -u postgres -- "$(pg_bin)/psql" -h "$DIR/pg/run" -p "$PG_PORT" -U postgres \
        -d postgres -X -v ON_ERROR_STOP=1 -Atq "$@"
}

record_pg_pid() {
    local pid
    pid=$(head -n 1 "$DIR/pg/data/postmaster.pid" 2>/dev/null | tr -dc '0-9' || true)
    [[ -n "$pid" ]] && echo "$pid" >"$PIDS/postgres.pid"
    echo "$pid"
}

start_postgres() {
    if pg_ready_for_tests; then
        log "postgres: already answering on 127.0.0.1:$PG_PORT (db $PG_DB ready)"
        if [[ -f "$DIR/pg/data/postmaster.pid" ]]; then record_pg_pid >/dev/null; fi
        return 0
    fi
    local bin
    bin=$(pg_bin)
    mkdir -p "$DIR/pg/run"
    chmod 0755 "$DIR" "$DIR/pg"
    chown postgres:postgres "$DIR/pg/run"
    if [[ ! -s "$DIR/pg/data/PG_VERSION" ]]; then
        log "postgres: initdb $DIR/pg/data ($bin)"
        rm -rf "$DIR/pg/data"
        mkdir -p "$DIR/pg/data"
        chown postgres:postgres "$DIR/pg/data"
        chmod 0700 "$DIR/pg/data"
        runuser -u postgres -- "$bin/initdb" -D "$DIR/pg/data" -U postgres -E UTF8 \
            --locale=C --auth-local=peer --auth-host=scram-sha-256 \
            >"$LOGS/initdb.log" 2>&1 || {
            log_tail "$LOGS/initdb.log"
            die "postgres: initdb failed"
        }
    fi
    touch "$LOGS/postgres.log"
    chown postgres:postgres "$LOGS/postgres.log"
    if ! pg_answers; then
        log "postgres: starting on 127.0.0.1:$PG_PORT (log $LOGS/postgres.log)"
        runuser -u postgres -- "$bin/pg_ctl" -D "$DIR/pg/data" \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$DIR/pg/run" \
            -l "$LOGS/postgres.log" -w -t 60 start >/dev/null 9>&- || {
            log_tail "$LOGS/postgres.log"
            die "postgres: pg_ctl start failed"
        }
    fi
    log "postgres: ensuring role $PG_USER and database $PG_DB"
    pg_admin_psql <<EOF
SELECT 'CREATE ROLE $PG_USER LOGIN SUPERUSER PASSWORD ''$PG_PASSWORD'''
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') \gexec
ALTER ROLE $PG_USER LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB') \gexec
EOF
    pg_ready_for_tests || {
        log_tail "$LOGS/postgres.log"
        die "postgres: cannot connect as $PG_USER to 127.0.0.1:$PG_PORT/$PG_DB"
    }
    log "postgres: up (pid $(record_pg_pid))"
}

# ---------------------------------------------------------------------------------------------
# sshd: an OpenSSH server of our own on 127.0.0.1 for the ssh_host target tests
# ---------------------------------------------------------------------------------------------
# Its own config, host key and client key (generated once per state dir), a non-default port,
# root login by key only, its log in $LOGS/sshd.log. Every command it is sent is recorded first
# in $LOGS/sshd-commands.log (a ForceCommand that logs $SSH_ORIGINAL_COMMAND, then runs it with
# /bin/sh -c as sshd would): the hostile-label tests read it.
# systemd cannot run as PID 1 here: $DIR/sshd/bin/systemctl is a stand-in that keeps unit state
# in files under $DIR/sshd/units and answers like systemctl (is-active, show, start, stop,
# restart, reload); the tests name it as the target's `systemctl` binary.

SSHD_PORT=12222
SSHD_DIR="$DIR/sshd"
SSHD_STANDIN="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fixtures/hosts/systemctl"

ensure_sshd_packages() {
    [[ -x /usr/sbin/sshd && -x /usr/bin/ssh-keygen && -x /usr/bin/sudo ]] && return 0
    log "sshd: installing openssh-server and sudo with apt"
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then # keep the package's own sshd on port 22 from starting
        printf '#!/bin/sh\n# temporary, created by remediator tests/services.sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        created_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-server sudo
    if ((created_policy)); then rm -f "$policy"; fi
}

# The console's browser tests (tests/console/) drive Debian's headless Chromium with Selenium
# through the system chromedriver: nothing to start, nothing downloaded by the tests themselves.
ensure_browser_packages() {
    [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] && return 0
    log "browser: installing chromium and chromium-driver with apt"
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver
}

sshd_answers() {
    timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$SSHD_PORT && head -c 4 <&3" 2>/dev/null |
        grep -q '^SSH-'
}

write_sshd_files() {
    mkdir -p "$SSHD_DIR/bin" "$SSHD_DIR/units" /run/sshd
    chmod 0700 "$SSHD_DIR"
    [[ -s "$SSHD_DIR/host_ed25519" ]] ||
        ssh-keygen -q -t ed25519 -N '' -C remediator-test-host -f "$SSHD_DIR/host_ed25519"
    [[ -s "$SSHD_DIR/client_ed25519" ]] ||
        ssh-keygen -q -t ed25519 -N '' -C remediator-test-client -f "$SSHD_DIR/client_ed25519"
    cp "$SSHD_DIR/client_ed25519.pub" "$SSHD_DIR/authorized_keys"
    chmod 0600 "$SSHD_DIR/authorized_keys"
    local before
    before=$(cat "$SSHD_DIR/sshd_config" 2>/dev/null || true)
    cat >"$SSHD_DIR/sshd_config" <<EOF
# remediator tests/services.sh: loopback only, key login only
ListenAddress 127.0.0.1:$SSHD_PORT
HostKey $SSHD_DIR/host_ed25519
PidFile $PIDS/sshd.pid
AuthorizedKeysFile $SSHD_DIR/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding no
X11Forwarding no
PermitTunnel no
MaxSessions 50
MaxStartups 50:30:100
LogLevel VERBOSE
ForceCommand $SSHD_DIR/bin/record-command
EOF
    cat >"$SSHD_DIR/bin/record-command" <<EOF
#!/bin/sh
# remediator tests/services.sh: record the command sshd was sent, then run it as sshd would.
printf '%s\\n' "\$SSH_ORIGINAL_COMMAND" >>"$LOGS/sshd-commands.log"
exec /bin/sh -c "\$SSH_ORIGINAL_COMMAND"
EOF
    chmod 0755 "$SSHD_DIR/bin/record-command"
    cp "$SSHD_STANDIN" "$SSHD_DIR/bin/systemctl"
    chmod 0755 "$SSHD_DIR/bin/systemctl"
    [[ "$before" == "$(cat "$SSHD_DIR/sshd_config")" ]] || SSHD_CONFIG_CHANGED=1
}

start_sshd() {
    ensure_sshd_packages
    write_sshd_files
    if sshd_answers && recorded_alive sshd sshd; then
        if ((${SSHD_CONFIG_CHANGED:-0})); then
            log "sshd: configuration changed, SIGHUP to pid $(read_pid sshd) (it re-reads it)"
            kill -HUP "$(read_pid sshd)"
            sleep 1
        fi
        log "sshd: already answering on 127.0.0.1:$SSHD_PORT"
        return 0
    fi
    if sshd_answers; then die "sshd: something not started by this script answers on $SSHD_PORT"; fi
    rm -f "$PIDS/sshd.pid"
    /usr/sbin/sshd -t -f "$SSHD_DIR/sshd_config" || die "sshd: invalid $SSHD_DIR/sshd_config"
    log "sshd: starting on 127.0.0.1:$SSHD_PORT (log $LOGS/sshd.log)"
    /usr/sbin/sshd -f "$SSHD_DIR/sshd_config" -E "$LOGS/sshd.log" 9>&-
    local deadline=$((SECONDS + 30))
    until sshd_answers && [[ -s "$PIDS/sshd.pid" ]]; do
        if ((SECONDS >= deadline)); then
            log_tail "$LOGS/sshd.log"
            die "sshd: not answering on 127.0.0.1:$SSHD_PORT after 30s"
        fi
        sleep 0.1
    done
    log "sshd: up (pid $(read_pid sshd))"
}

stop_sshd() {
    if recorded_alive sshd sshd; then
        stop_pid sshd "$(read_pid sshd)" sshd TERM 20
    else
        log "sshd: not running (nothing recorded)"
    fi
    rm -f "$PIDS/sshd.pid"
}

sshd_env() {
    cat <<EOF
SSHD_ADDRESS=127.0.0.1:$SSHD_PORT
SSHD_USER=root
SSHD_CLIENT_KEY=$SSHD_DIR/client_ed25519
SSHD_HOST_KEY=$(cut -d' ' -f1,2 "$SSHD_DIR/host_ed25519.pub")
SSHD_SYSTEMCTL=$SSHD_DIR/bin/systemctl
SSHD_UNITS_DIR=$SSHD_DIR/units
SSHD_LOG=$LOGS/sshd.log
SSHD_COMMAND_LOG=$LOGS/sshd-commands.log
EOF
}

# ---------------------------------------------------------------------------------------------
# rabbitmq (queue recovery tests): its own epmd, node, data dir and ports, all on 127.0.0.1
# ---------------------------------------------------------------------------------------------

RABBIT_BIN=/usr/lib/rabbitmq/bin

ensure_rabbitmq_package() {
    [[ -x "$RABBIT_BIN/rabbitmq-server" ]] && return 0
    log "rabbitmq: installing rabbitmq-server with apt (its init script is kept from starting)"
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\n# temporary, created by remediator tests/services.sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        created_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server; then
        if ((created_policy)); then rm -f "$policy"; fi
        die "rabbitmq: apt install failed"
    fi
    if ((created_policy)); then rm -f "$policy"; fi
    [[ -x "$RABBIT_BIN/rabbitmq-server" ]] || die "rabbitmq: $RABBIT_BIN/rabbitmq-server missing"
}

rabbit_env() { # the environment every rabbitmq process of ours runs with (for `env`)
    RABBIT_ENV=(
        HOME="$DIR/rabbitmq"
        RABBITMQ_NODENAME=remediator@localhost
        RABBITMQ_CONFIG_FILE="$DIR/rabbitmq/rabbitmq.conf"
        RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/rabbitmq/enabled_plugins"
        RABBITMQ_MNESIA_BASE="$DIR/rabbitmq/mnesia"
        RABBITMQ_LOG_BASE="$LOGS/rabbitmq"
        RABBITMQ_PID_FILE="$PIDS/rabbitmq.pid"
        RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT"
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
        ERL_EPMD_ADDRESS=127.0.0.1
        ERL_EPMD_PORT="$RABBIT_EPMD_PORT"
    )
}

rabbit_answers() {
    timeout 10 curl -fsS -u "$RABBIT_USER:$RABBIT_PASSWORD" \
        "http://127.0.0.1:$RABBIT_HTTP_PORT/api/overview" >/dev/null 2>&1
}

start_rabbitmq() {
    ensure_rabbitmq_package
    if rabbit_answers; then
        log "rabbitmq: already answering on 127.0.0.1:$RABBIT_HTTP_PORT"
        return 0
    fi
    mkdir -p "$DIR/rabbitmq" "$LOGS/rabbitmq"
    chmod 0700 "$DIR/rabbitmq"
    if [[ ! -s "$DIR/rabbitmq/.erlang.cookie" ]]; then
        (umask 077 && head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$DIR/rabbitmq/.erlang.cookie")
    fi
    chmod 0400 "$DIR/rabbitmq/.erlang.cookie"
    printf '%s\n' \
        "listeners.tcp.local = 127.0.0.1:$RABBIT_AMQP_PORT" \
        "management.tcp.ip = 127.0.0.1" \
        "management.tcp.port = $RABBIT_HTTP_PORT" \
        "default_user = $RABBIT_USER" \
        "default_pass = $RABBIT_PASSWORD" \
        "default_user_tags.administrator = true" \
        "collect_statistics_interval = 500" >"$DIR/rabbitmq/rabbitmq.conf"
    echo '[rabbitmq_management,rabbitmq_shovel,rabbitmq_shovel_management].' \
        >"$DIR/rabbitmq/enabled_plugins"
    local pid
    if ! recorded_alive epmd epmd; then
        log "rabbitmq: starting epmd on 127.0.0.1:$RABBIT_EPMD_PORT"
        setsid epmd -address 127.0.0.1 -port "$RABBIT_EPMD_PORT" </dev/null \
            >>"$LOGS/epmd.log" 2>&1 9>&- &
        echo $! >"$PIDS/epmd.pid"
    fi
    if ! recorded_alive rabbitmq beam.smp; then
        rm -f "$PIDS/rabbitmq.pid"
        log "rabbitmq: starting node remediator@localhost (AMQP 127.0.0.1:$RABBIT_AMQP_PORT," \
            "management 127.0.0.1:$RABBIT_HTTP_PORT, log $LOGS/rabbitmq.log)"
        rabbit_env
        # The subshell execs, so no copy of this script (holding the lock on fd 9) lingers.
        (cd "$DIR/rabbitmq" && exec env "${RABBIT_ENV[@]}" setsid "$RABBIT_BIN/rabbitmq-server") \
            </dev/null >>"$LOGS/rabbitmq.log" 2>&1 9>&- &
    fi
    local deadline=$((SECONDS + 120))
    until rabbit_answers; do
        if ((SECONDS >= deadline)); then
            log_tail "$LOGS/rabbitmq.log"
            die "rabbitmq: management API not answering on 127.0.0.1:$RABBIT_HTTP_PORT after 120s"
        fi
        sleep 0.5
    done
    pid=$(read_pid rabbitmq || echo '?')
    log "rabbitmq: up (pid $pid)"
}

stop_rabbitmq() {
    if recorded_alive rabbitmq beam.smp; then
        stop_pid rabbitmq "$(read_pid rabbitmq)" beam.smp TERM 60
    else
        log "rabbitmq: not running (nothing recorded)"
    fi
    rm -f "$PIDS/rabbitmq.pid"
    if recorded_alive epmd epmd; then
        stop_pid epmd "$(read_pid epmd)" epmd TERM 10
    fi
    rm -f "$PIDS/epmd.pid"
}

# ---------------------------------------------------------------------------------------------
# env file
# ---------------------------------------------------------------------------------------------

write_env() {
    local tmp="$DIR/env.tmp.$$"
    cat >"$tmp" <<EOF
DOCKER_HOST=$DOCKER_HOST_URL
REMEDIATOR_TEST_IMAGE=$TEST_IMAGE
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
POSTGRES_DSN=postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
PROMETHEUS_BIN=$(command -v prometheus)
PROMTOOL_BIN=$(command -v promtool)
ALERTMANAGER_BIN=$(command -v prometheus-alertmanager)
AMTOOL_BIN=$(command -v amtool)
REDIS_SERVER_BIN=$(command -v redis-server)
BUSYBOX_BIN=$(static_busybox)
RABBITMQ_API_URL=http://127.0.0.1:$RABBIT_HTTP_PORT
RABBITMQ_AMQP_URL=amqp://$RABBIT_USER:$RABBIT_PASSWORD@127.0.0.1:$RABBIT_AMQP_PORT/
RABBITMQ_USER=$RABBIT_USER
RABBITMQ_PASSWORD=$RABBIT_PASSWORD
EOF
    sshd_env >>"$tmp"
    if [[ -f "$DIR/env" ]] && cmp -s "$tmp" "$DIR/env"; then
        rm -f "$tmp"
        log "env: $DIR/env unchanged"
    else
        mv -f "$tmp" "$DIR/env"
        log "env: wrote $DIR/env"
    fi
}

# ---------------------------------------------------------------------------------------------
# subcommands
# ---------------------------------------------------------------------------------------------

check_socket_paths() {
    # sun_path is 108 bytes; containerd's ttrpc socket under the exec-root is the longest one.
    local longest="$DIR/docker/exec/containerd/containerd.sock.ttrpc"
    ((${#longest} < 100)) || die "REMEDIATOR_SERVICES_DIR=$DIR is too long for unix sockets" \
        "($longest would be ${#longest} chars, the limit here is 99); use a shorter path"
}

with_lock() {
    # fd 9 holds the lock; every daemon is started with 9>&- so none of them inherits it.
    mkdir -p "$DIR"
    exec 9>"$DIR/.lock"
    flock -w 300 9 || die "another services.sh is holding $DIR/.lock"
}

cmd_up() {
    [[ $EUID -eq 0 ]] || die "must run as root (apt, dockerd, runuser)"
    check_socket_paths
    with_lock
    local start=$SECONDS
    ensure_packages
    ensure_browser_packages
    mkdir -p "$PIDS" "$LOGS"
    start_docker
    start_redis
    start_postgres
    start_rabbitmq
    start_sshd
    ensure_test_image
    write_env
    log "up: all services ready in $((SECONDS - start))s (state dir $DIR)"
}

unmount_docker_leftovers() {
    # dockerd 20.10 leaves e.g. the nsfs mount $exec-root/netns/default behind; unmount only
    # mount points inside our own $DIR/docker (deepest first) so the state dir can be deleted.
    local mp
    awk -v prefix="$DIR/docker/" 'index($2, prefix) == 1 { print $2 }' /proc/mounts |
        sort -r | while IFS= read -r mp; do
        log "docker: unmounting leftover $mp"
        umount "$mp" 2>/dev/null || umount -l "$mp" || log "docker: could not unmount $mp"
    done
}

cmd_down() {
    with_lock
    local pid
    if recorded_alive dockerd dockerd; then
        pid=$(read_pid dockerd)
        if docker_answers; then
            local ids
            ids=$(docker_cmd ps -aq --filter "label=$TEST_LABEL" || true)
            if [[ -n "$ids" ]]; then
                log "docker: removing $(wc -w <<<"$ids") container(s) labelled $TEST_LABEL"
                # shellcheck disable=SC2086
                docker_cmd rm -f $ids >/dev/null || log "docker: some containers could not be removed"
            fi
        fi
        # containerd supervised by our dockerd (started by it, inside our exec-root).
        local ctrd_pid=""
        if [[ -s "$DIR/docker/exec/containerd/containerd.pid" ]]; then
            ctrd_pid=$(head -n 1 "$DIR/docker/exec/containerd/containerd.pid" | tr -dc '0-9')
        fi
        stop_pid dockerd "$pid" dockerd TERM 60
        if [[ -n "$ctrd_pid" ]]; then stop_pid containerd "$ctrd_pid" containerd TERM 20; fi
    else
        log "dockerd: not running (nothing recorded)"
    fi
    rm -f "$PIDS/dockerd.pid"
    # Also after a failed start; never while some dockerd still answers on our socket.
    docker_answers || unmount_docker_leftovers

    if recorded_alive redis redis-server; then
        stop_pid redis "$(read_pid redis)" redis-server TERM 30
    else
        log "redis: not running (nothing recorded)"
    fi
    rm -f "$PIDS/redis.pid"

    # The postmaster's own pid file is authoritative; SIGINT = fast shutdown.
    if [[ -f "$DIR/pg/data/postmaster.pid" ]]; then record_pg_pid >/dev/null; fi
    if recorded_alive postgres postgres; then
        stop_pid postgres "$(read_pid postgres)" postgres INT 60
    else
        log "postgres: not running (nothing recorded)"
    fi
    rm -f "$PIDS/postgres.pid"
    stop_rabbitmq
    stop_sshd
    log "down: done (data kept in $DIR; delete it for a clean slate)"
}

cmd_status() {
    local rc=0 pid
    if docker_answers; then
        pid=$(read_pid dockerd || echo '?')
        if docker_cmd image inspect "$TEST_IMAGE" >/dev/null 2>&1; then
            echo "docker: up (pid $pid, $DOCKER_HOST_URL, image $TEST_IMAGE present)"
        else
            echo "docker: up (pid $pid, $DOCKER_HOST_URL, image $TEST_IMAGE MISSING)"
            rc=1
        fi
    else
        echo "docker: down"
        rc=1
    fi
    if redis_answers; then
        echo "redis: up (pid $(read_pid redis || echo '?'), 127.0.0.1:$REDIS_PORT)"
    else
        echo "redis: down"
        rc=1
    fi
    if [[ -n "$(initdb_bin)" ]] && pg_ready_for_tests; then
        echo "postgres: up (pid $(read_pid postgres || echo '?'), 127.0.0.1:$PG_PORT)"
    else
        echo "postgres: down"
        rc=1
    fi
    if sshd_answers; then
        echo "sshd: up (pid $(read_pid sshd || echo '?'), 127.0.0.1:$SSHD_PORT)"
    else
        echo "sshd: down"
        rc=1
    fi
    if rabbit_answers; then
        echo "rabbitmq: up (pid $(read_pid rabbitmq || echo '?'), 127.0.0.1:$RABBIT_HTTP_PORT)"
    else
        echo "rabbitmq: down"
        rc=1
    fi
    return "$rc"
}

cmd_env() {
    [[ -f "$DIR/env" ]] || die "$DIR/env does not exist; run: bash tests/services.sh up"
    cat "$DIR/env"
}

main() {
    case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h | --help | help) usage ;;
    *)
        usage
        exit 2
        ;;
    esac
}

main "$@"
