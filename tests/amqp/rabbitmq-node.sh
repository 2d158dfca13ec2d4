#!/usr/bin/env bash
# Private, throwaway RabbitMQ nodes for the AMQP test suites, the demo and the
# benchmark. Never touches the system's default node (rabbit@HOST, port 5672,
# /var/lib/rabbitmq, the shared epmd on 4369) and needs no systemd.
#
# Usage:
#   tests/amqp/rabbitmq-node.sh start DIR [--port N] [--tls] [--name NAME]
#                                         [--consumer-timeout MS]
#       Starts one node NAME@localhost (default ebats-test-$$) whose every file
#       lives under DIR, with the AMQP listener on 127.0.0.1:N (default: a free
#       loopback port), waits until it accepts connections and prints
#           amqp://guest@127.0.0.1:PORT/
#       and, with --tls, a second line
#           amqps://guest@localhost:TLSPORT/
#       (CA, server and client certificates in DIR/tls/: ca.pem, server.pem,
#       server.key, client.pem, client.key; the server certificate is for
#       localhost and 127.0.0.1, but librabbitmq 0.11 only matches DNS names,
#       hence "localhost" in the URL). Writes DIR/port, DIR/node, DIR/env and,
#       with --tls, DIR/tls_port. Diagnostics go to stderr. Starting again in
#       the same DIR with the same --name keeps the node's data (mnesia/);
#       extra settings can be dropped into DIR/conf.d/*.conf before `start`.
#       Takes 6-8 s here (RabbitMQ 3.10 boot), --tls adds ~0.5 s.
#   tests/amqp/rabbitmq-node.sh cluster DIR [--nodes 3] [--name NAME]
#                                           [--consumer-timeout MS]
#       Starts nodes NAME-n1 .. NAME-nK (default K=3) in DIR/n1 .. DIR/nK
#       sharing one Erlang cookie and one private epmd, joins n2..nK to n1,
#       waits until all K run in the cluster and prints one amqp:// URL per
#       node (also in DIR/ports, one port a line; DIR/nI/port etc. per node).
#       Takes ~17 s here for 3 nodes on 2 cores. No --tls, no --port.
#   tests/amqp/rabbitmq-node.sh stop DIR
#       Stops the node (or every node of a cluster DIR, in parallel) and its
#       private epmd: rabbitmqctl stop (15 s), then TERM to the VM, KILL after
#       10 s. Idempotent: exits 0 when nothing runs. Leaves DIR's files. ~2.5 s.
#   tests/amqp/rabbitmq-node.sh crash DIR
#       Kills the node's VM with SIGKILL (DIR/nI: one member of a cluster).
#   tests/amqp/rabbitmq-node.sh restart DIR
#       Starts a crashed or stopped node again with its name, ports and data;
#       a cluster member rejoins its cluster.
#   tests/amqp/rabbitmq-node.sh ctl DIR ARGS...
#       Runs `rabbitmqctl -n NODE ARGS...` against the node in DIR (DIR/nI for
#       a cluster member; a cluster DIR means its n1), e.g.
#           tests/amqp/rabbitmq-node.sh ctl "$dir" close_all_connections test
#       Exits with rabbitmqctl's status; 69 without calling it when the node's
#       private epmd is down (node stopped). Each call costs ~0.5 s of Erlang
#       start-up, so poll ports rather than loop on ctl.
#
# Example:
#   dir=$(mktemp -d)                     # e.g. /tmp/tmp.AbC123
#   url=$(tests/amqp/rabbitmq-node.sh start "$dir")
#   ...                                  # connect to $url as guest/guest
#   tests/amqp/rabbitmq-node.sh stop "$dir"; rm -rf "$dir"
#
#   # Or talk to the node with the RabbitMQ tools directly. DIR/env sets HOME
#   # and puts /usr/lib/rabbitmq/bin first in PATH (the /usr/sbin wrappers
#   # run as the rabbitmq user with its own HOME and cookie), so use a subshell,
#   # and a path with a slash (`source env` finds /usr/bin/env first):
#   ( source "$dir/env"; rabbitmqctl -n "$(cat "$dir/node")" list_queues )
#
# Layout of DIR (one node): rabbitmq.conf, rabbitmq-env.conf (empty, so the
# system /etc/rabbitmq/rabbitmq-env.conf is not read), advanced.config,
# conf.d/ (empty unless you add files), enabled_plugins ("[]."), home/.erlang.cookie (0400),
# mnesia/, log/ (console.log, rabbit.log, epmd.log), pid (written and removed
# by RabbitMQ), beam.pid, server.pid, epmd.pid, port, tls_port, node, env.
#
# Isolation: the node runs /usr/lib/rabbitmq/bin/rabbitmq-server directly as
# the calling user (not the /usr/sbin wrapper, which su's to the rabbitmq user
# and cd's to /var/lib/rabbitmq), with its own epmd on a free port
# (ERL_EPMD_PORT), its own distribution port (RABBITMQ_DIST_PORT), all
# listeners on 127.0.0.1, and the CLI tools on an OS-chosen distribution port
# (RABBITMQ_CTL_DIST_PORT_MIN/MAX=0) so parallel runs do not compete for the
# CLI's default 35672-35682 range. Every process this script starts carries
# EBATS_RABBITMQ_NODE_DIR=DIR in its environment; `stop` only signals
# processes carrying its DIR.
#
# Environment:
#   RABBITMQ_START_TIMEOUT  seconds `start` (and each phase of `cluster`) waits
#                           for the node(s), default 60; on timeout the last 40
#                           lines of each log are printed and the exit code is 1
#   RABBITMQ_BIN_DIR        where rabbitmq-server/rabbitmqctl live, default
#                           /usr/lib/rabbitmq/bin
#
# Requires rabbitmq-server (apt-get install -y rabbitmq-server), iproute2 (ss)
# is used when present, openssl for --tls. Root or any other user.
set -euo pipefail

PROG=rabbitmq-node.sh
RMQ_BIN=${RABBITMQ_BIN_DIR:-/usr/lib/rabbitmq/bin}
START_TIMEOUT=${RABBITMQ_START_TIMEOUT:-60}
if ! [[ $START_TIMEOUT =~ ^[1-9][0-9]*$ ]]; then
    echo "$PROG: RABBITMQ_START_TIMEOUT='$START_TIMEOUT' is not a number of seconds" >&2
    exit 2
fi
MARK=EBATS_RABBITMQ_NODE_DIR
# Ports are picked below the kernel's ephemeral range (32768-60999 by default)
# so they do not collide with outgoing connections.
PORT_LO=20000
PORT_HI=32000
# Never picked: epmd, the default AMQP/AMQPS/management ports, the default
# distribution port and the ports of a developer's long-running test node.
RESERVED=" 4369 5671 5672 15672 25672 25673 "
PICKED=" "
# Distribution options shared by the node and the CLI tools: listen on
# loopback only, and do not let the VM start an epmd (the script starts the
# private one first). rabbitmqctl still starts one through a separate `erl`
# when none answers on ERL_EPMD_PORT: `ctl` refuses to run then, and `stop`
# removes such strays (kill_stray_epmds).
DIST_ARGS="-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}"

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }
now_ms() { date +%s%3N; }
secs_since() { local d=$(( $(now_ms) - $1 )); printf '%d.%01d' $((d / 1000)) $((d % 1000 / 100)); }

need_rabbitmq() {
    if [ ! -x "$RMQ_BIN/rabbitmq-server" ] || [ ! -x "$RMQ_BIN/rabbitmqctl" ]; then
        die "RabbitMQ is not installed ($RMQ_BIN/rabbitmq-server not found). Install it (as root) with:
    apt-get install -y rabbitmq-server
or set RABBITMQ_BIN_DIR to the directory holding rabbitmq-server and rabbitmqctl."
    fi
    command -v epmd >/dev/null 2>&1 || die "epmd (Erlang) not found; apt-get install -y rabbitmq-server pulls it in (erlang-base)"
}

# abs_dir DIR: absolute path of DIR (created), in REPLY. Only characters that
# survive the sh scripts of RabbitMQ and cuttlefish unquoted are accepted.
abs_dir() {
    local d=$1
    mkdir -p -- "$d" || die "cannot create $d"
    REPLY=$(cd -- "$d" && pwd -P)
    [[ $REPLY =~ ^[A-Za-z0-9/._+@:-]+$ ]] \
        || die "DIR '$REPLY' has characters RabbitMQ's scripts cannot handle (use letters, digits, / . _ + @ : -)"
}
# existing_dir DIR: like abs_dir but does not create it; REPLY empty if absent.
existing_dir() {
    REPLY=
    [ -d "$1" ] && REPLY=$(cd -- "$1" && pwd -P)
    return 0
}

# --- processes -------------------------------------------------------------

# owned_pids DIR: the pids of live processes this script started for DIR.
owned_pids() {
    local f
    # grep exits 2 when a process vanishes while it reads; that is fine.
    { grep -lzx -- "$MARK=$1" /proc/[0-9]*/environ 2>/dev/null || true; } | while read -r f; do
        f=${f#/proc/}
        echo "${f%/environ}"
    done
}
# owned PID DIR: PID is alive and was started by this script for DIR.
owned() {
    [[ ${1:-} =~ ^[0-9]+$ ]] && grep -qzx -- "$MARK=$2" "/proc/$1/environ" 2>/dev/null
}
# kill_owned DIR GRACE: TERM every process started for DIR, KILL after GRACE s.
kill_owned() {
    local dir=$1 grace=$2 pids i
    pids=$(owned_pids "$dir")
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        pids=$(owned_pids "$dir")
        [ -n "$pids" ] || return 0
        sleep 0.1
    done
    say "processes of $dir still alive after ${grace}s, sending KILL: ${pids//$'\n'/ }"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        [ -n "$(owned_pids "$dir")" ] || return 0
        sleep 0.1
    done
}
# kill_stray_epmds DIR: epmd daemons that rabbitmqctl (its ensure_epmd step
# runs a plain `erl`) started on the node's private port after the private
# epmd was gone, e.g. `source DIR/env; rabbitmqctl ...` after `stop`. They
# are recognised by executable, HOME=DIR/home and ERL_EPMD_PORT.
kill_stray_epmds() {
    local dir=$1 port f pid
    port=$(sed -n "s/^export ERL_EPMD_PORT='\(.*\)'$/\1/p" "$dir/env" 2>/dev/null || true)
    [ -n "$port" ] || return 0
    for f in $({ grep -lzx -- "HOME=$dir/home" /proc/[0-9]*/environ 2>/dev/null || true; }); do
        pid=${f#/proc/}; pid=${pid%/environ}
        [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */epmd ]] || continue
        grep -qzx -- "ERL_EPMD_PORT=$port" "$f" 2>/dev/null || continue
        say "stopping stray epmd $pid on port $port (started by a CLI tool for $dir)"
        kill -TERM "$pid" 2>/dev/null || true
    done
}
# close_fds: in a subshell about to exec a daemon, close every descriptor
# above 2 that the caller (a test harness, ctest, a pipe) may have passed us.
close_fds() {
    local fd
    for fd in "/proc/$BASHPID/fd/"*; do
        fd=${fd##*/}
        if [[ $fd =~ ^[0-9]+$ ]] && [ "$fd" -gt 2 ] && [ "$fd" -ne 255 ]; then
            eval "exec $fd>&-" 2>/dev/null || true
        fi
    done
}

# --- ports -----------------------------------------------------------------

port_in_use() {
    local p=$1 out
    if out=$(ss -Htan "sport = :$p" 2>/dev/null); then
        [ -n "$out" ] && return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && return 0
    return 1
}
# pick_port: a free loopback port not picked before in this run, in REPLY.
pick_port() {
    local p i
    for ((i = 0; i < 1000; i++)); do
        p=$(( PORT_LO + (RANDOM * 32768 + RANDOM) % (PORT_HI - PORT_LO) ))
        case "$RESERVED$PICKED" in *" $p "*) continue ;; esac
        port_in_use "$p" && continue
        PICKED+="$p "
        REPLY=$p
        return 0
    done
    die "no free loopback port found in $PORT_LO-$PORT_HI"
}
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- epmd ------------------------------------------------------------------

# start_epmd DIR PORT: a private epmd on 127.0.0.1:PORT, pid in DIR/epmd.pid.
# Returns 1 if it could not listen (port taken meanwhile).
start_epmd() {
    local dir=$1 port=$2 pid i
    mkdir -p "$dir/log"
    (
        export "$MARK=$dir"
        unset ERL_EPMD_PORT
        cd "$dir"
        close_fds
        exec setsid epmd -port "$port" -address 127.0.0.1 </dev/null >>"$dir/log/epmd.log" 2>&1
    ) &
    pid=$!
    echo "$pid" >"$dir/epmd.pid"
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        if command -v ss >/dev/null 2>&1; then
            ss -Htlnp "sport = :$port" 2>/dev/null | grep -q "pid=$pid," && return 0
        elif epmd -port "$port" -names >/dev/null 2>&1; then
            sleep 0.1
            kill -0 "$pid" 2>/dev/null && return 0
        fi
        sleep 0.05
    done
    kill -TERM "$pid" 2>/dev/null || true
    say "private epmd on port $port did not come up (port taken meanwhile?) $(tail -n 3 "$dir/log/epmd.log" 2>/dev/null | tr '\n' ' ')"
    return 1
}

# --- TLS -------------------------------------------------------------------

gen_tls() {
    local t=$1/tls
    command -v openssl >/dev/null 2>&1 || die "--tls needs the openssl command: apt-get install -y openssl"
    rm -rf "$t"
    mkdir -p "$t"
    cat >"$t/openssl.cnf" <<'EOF'
# Throwaway test PKI written by tests/amqp/rabbitmq-node.sh.
[req]
distinguished_name = dn
prompt = no
[dn]
CN = ebats-test
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    (
        umask 077
        cd "$t"
        serial() { echo "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"; }
        openssl req -x509 -new -config openssl.cnf -extensions v3_ca -newkey rsa:2048 -nodes \
            -keyout ca.key -out ca.pem -days 30 -subj "/O=ebats test/CN=ebats test CA $(basename "$1")" -set_serial "$(serial)"
        openssl req -new -config openssl.cnf -newkey rsa:2048 -nodes \
            -keyout server.key -out server.csr -subj "/O=ebats test/CN=localhost"
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "$(serial)" -days 30 \
            -extfile openssl.cnf -extensions v3_server -out server.pem
        openssl req -new -config openssl.cnf -newkey rsa:2048 -nodes \
            -keyout client.key -out client.csr -subj "/O=ebats test/CN=guest"
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -set_serial "$(serial)" -days 30 \
            -extfile openssl.cnf -extensions v3_client -out client.pem
        rm -f server.csr client.csr
        # Certificates are public; keys stay 0600 and owned by the user the
        # node runs as (this script runs the node as the calling user).
        chmod 0644 ca.pem server.pem client.pem
    ) >"$t/openssl.log" 2>&1 || { cat "$t/openssl.log" >&2; die "openssl failed generating the test certificates"; }
}

# --- node files ------------------------------------------------------------

# prepare_node DIR NAME PORT TLSPORT DISTPORT EPMDPORT COOKIE CONSUMER_TIMEOUT
prepare_node() {
    local dir=$1 name=$2 port=$3 tls_port=$4 dist_port=$5 epmd_port=$6 cookie=$7 ctimeout=$8
    local node=$name@localhost kv
    mkdir -p "$dir/home" "$dir/log" "$dir/mnesia" "$dir/conf.d"
    rm -f "$dir/home/.erlang.cookie"
    (umask 077; printf '%s' "$cookie" >"$dir/home/.erlang.cookie")
    chmod 0400 "$dir/home/.erlang.cookie"
    echo '[].' >"$dir/enabled_plugins"
    # RabbitMQ re-sends a message its at-least-once dead-lettering could not
    # hand on (the delay levels, while the node restarts) only after this
    # timeout, 120 s by default: 5 s keeps fault tests short. docs/RABBITMQ.md
    # recommends the same for production.
    echo '[{rabbit, [{dead_letter_worker_publisher_confirm_timeout, 5000}]}].' >"$dir/advanced.config"
    echo '# Empty on purpose: keeps /etc/rabbitmq/rabbitmq-env.conf out of this private node.' >"$dir/rabbitmq-env.conf"
    {
        echo "# Private test node $node, written by tests/amqp/rabbitmq-node.sh."
        echo "listeners.tcp.default = 127.0.0.1:$port"
        echo "vm_memory_high_watermark.relative = 0.8"
        echo "disk_free_limit.absolute = 50MB"
        echo "log.file = rabbit.log"
        echo "log.file.level = warning"
        [ -n "$ctimeout" ] && echo "consumer_timeout = $ctimeout"
        if [ -n "$tls_port" ]; then
            echo "listeners.ssl.default = 127.0.0.1:$tls_port"
            echo "ssl_options.cacertfile = $dir/tls/ca.pem"
            echo "ssl_options.certfile = $dir/tls/server.pem"
            echo "ssl_options.keyfile = $dir/tls/server.key"
            echo "ssl_options.verify = verify_peer"
            echo "ssl_options.fail_if_no_peer_cert = false"
        fi
    } >"$dir/rabbitmq.conf"
    {
        echo "# Environment of the private RabbitMQ node $node (tests/amqp/rabbitmq-node.sh)."
        echo "# Usage: source $dir/env; rabbitmqctl -n \$(cat $dir/node) status"
        for kv in \
            "HOME=$dir/home" \
            "RABBITMQ_NODENAME=$node" \
            "RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf" \
            "RABBITMQ_CONFIG_FILE=$dir/rabbitmq" \
            "RABBITMQ_CONFIG_FILES=$dir/conf.d" \
            "RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config" \
            "RABBITMQ_MNESIA_BASE=$dir/mnesia" \
            "RABBITMQ_LOG_BASE=$dir/log" \
            "RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins" \
            "RABBITMQ_PID_FILE=$dir/pid" \
            "RABBITMQ_DIST_PORT=$dist_port" \
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=$DIST_ARGS" \
            "RABBITMQ_CTL_ERL_ARGS=$DIST_ARGS" \
            "RABBITMQ_CTL_DIST_PORT_MIN=0" \
            "RABBITMQ_CTL_DIST_PORT_MAX=0" \
            "ERL_EPMD_PORT=$epmd_port" \
            "ERL_CRASH_DUMP=$dir/log/erl_crash.dump"; do
            printf "export %s='%s'\n" "${kv%%=*}" "${kv#*=}"
        done
        # shellcheck disable=SC2016 # $PATH is expanded when the file is sourced
        printf 'export PATH=%s:"$PATH"\n' "$RMQ_BIN"
    } >"$dir/env"
    echo "$node" >"$dir/node"
    echo "$port" >"$dir/port"
    if [ -n "$tls_port" ]; then echo "$tls_port" >"$dir/tls_port"; else rm -f "$dir/tls_port"; fi
    rm -f "$dir/pid" "$dir/beam.pid" "$dir/server.pid"
}

# launch_node DIR: start rabbitmq-server detached (own session), pid of the
# wrapper script in DIR/server.pid.
launch_node() {
    local dir=$1
    (
        # shellcheck disable=SC1091
        . "$dir/env"
        export "$MARK=$dir"
        cd "$dir"
        close_fds
        exec setsid "$RMQ_BIN/rabbitmq-server" </dev/null >>"$dir/log/console.log" 2>&1
    ) &
    echo "$!" >"$dir/server.pid"
}

# node_ctl DIR ARGS...: rabbitmqctl against the node in DIR, in a subshell.
node_ctl() { node_ctl_t 0 "$@"; }
# node_ctl_t SECS DIR ARGS...: the same, killed after SECS seconds (0: never).
node_ctl_t() {
    local secs=$1 dir=$2
    shift 2
    (
        # shellcheck disable=SC1091
        . "$dir/env"
        if [ "$secs" -gt 0 ]; then
            exec timeout "$secs" "$RMQ_BIN/rabbitmqctl" -n "$(cat "$dir/node")" "$@"
        fi
        exec "$RMQ_BIN/rabbitmqctl" -n "$(cat "$dir/node")" "$@"
    )
}

show_logs() {
    local f
    for f in "$1"/log/console.log "$1"/log/rabbit.log "$1"/log/*_upgrade.log "$1"/log/epmd.log; do
        if [ -s "$f" ]; then
            # A failed boot logs its cause first and a long crash report
            # after it: show the first error lines too when they scrolled off.
            if [ "$(wc -l <"$f")" -gt 40 ] && grep -q '\[error\]' "$f"; then
                say "---- first error lines of $f"
                grep -m 12 '\[error\]' "$f" >&2 || true
            fi
            say "---- last 40 lines of $f"
            tail -n 40 "$f" >&2
        elif [ -e "$f" ] || [[ $f == */console.log || $f == */rabbit.log ]]; then
            say "---- $f: empty or not written yet"
        fi
    done
}
addr_in_use() { grep -qis 'eaddrinuse' "$1"/log/*.log; }

# wait_node DIR DEADLINE(epoch s): until the node accepts AMQP (and AMQPS)
# connections and `rabbitmqctl await_startup` agrees. Returns 1 on failure.
wait_node() {
    local dir=$1 deadline=$2 port tls_port server left
    port=$(cat "$dir/port")
    tls_port=$(cat "$dir/tls_port" 2>/dev/null || true)
    server=$(cat "$dir/server.pid")
    while :; do
        if ! owned "$server" "$dir"; then
            say "node $(cat "$dir/node") exited during start-up"
            return 1
        fi
        if tcp_open "$port" && { [ -z "$tls_port" ] || tcp_open "$tls_port"; }; then
            break
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            say "node $(cat "$dir/node") did not accept connections on 127.0.0.1:$port within ${START_TIMEOUT}s"
            return 1
        fi
        sleep 0.1
    done
    left=$(( deadline - $(date +%s) ))
    [ "$left" -ge 5 ] || left=5
    if ! node_ctl_t "$((left + 5))" "$dir" -q -t "$left" await_startup >&2; then
        say "rabbitmqctl await_startup failed for $(cat "$dir/node")"
        return 1
    fi
    [ -s "$dir/pid" ] && cp "$dir/pid" "$dir/beam.pid"
    return 0
}

# stop_node DIR: stop one node and whatever else this script started for DIR.
stop_node() {
    local dir=$1 beam node i
    [ -f "$dir/node" ] || { kill_owned "$dir" 10; return 0; }
    node=$(cat "$dir/node")
    beam=$(cat "$dir/pid" 2>/dev/null || cat "$dir/beam.pid" 2>/dev/null || true)
    if owned "$beam" "$dir"; then
        local t0
        t0=$(now_ms)
        # With the pid file, rabbitmqctl stop returns once the VM has exited.
        if [ -f "$dir/pid" ]; then
            node_ctl_t 15 "$dir" -q stop "$dir/pid" >/dev/null 2>&1 || true
        else
            node_ctl_t 15 "$dir" -q stop >/dev/null 2>&1 || true
        fi
        for ((i = 0; i < 30; i++)); do owned "$beam" "$dir" || break; sleep 0.1; done
        if owned "$beam" "$dir"; then
            say "node $node did not stop via rabbitmqctl; sending TERM to $beam"
            kill -TERM "$beam" 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do owned "$beam" "$dir" || break; sleep 0.1; done
            if owned "$beam" "$dir"; then
                say "node $node still alive after 10s; sending KILL to $beam"
                kill -KILL "$beam" 2>/dev/null || true
            fi
        fi
        say "stopped $node in $(secs_since "$t0")s"
    fi
    # The rabbitmq-server wrapper, epmd and any helper left for this DIR.
    kill_owned "$dir" 10
    kill_stray_epmds "$dir"
    rm -f "$dir/beam.pid" "$dir/server.pid" "$dir/epmd.pid"
}

running_in() {  # running_in DIR: something this script started for DIR still runs
    [ -n "$(owned_pids "$1")" ]
}

# --- commands --------------------------------------------------------------

CLEANUP_DIRS=()
cleanup_on_failure() {
    local rc=$? d
    [ "$rc" -eq 0 ] && return 0
    for d in "${CLEANUP_DIRS[@]}"; do
        kill_owned "$d" 5 || true
    done
    exit "$rc"
}

# check_name_and_timeout NAME CONSUMER_TIMEOUT: dies unless NAME is a usable
# node name and CONSUMER_TIMEOUT is empty or a number of milliseconds.
check_name_and_timeout() {
    [[ $1 =~ ^[A-Za-z0-9_-]+$ ]] || die "--name '$1': use letters, digits, _ and -"
    [ -z "$2" ] || [[ $2 =~ ^[0-9]+$ ]] || die "--consumer-timeout '$2' is not a number of milliseconds"
}

cmd_start() {
    local dir='' port='' tls=0 name="ebats-test-$$" ctimeout='' attempt cookie epmd_port dist_port tls_port t0
    [ $# -ge 1 ] || usage
    dir=$1
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --port) port=${2:?--port needs a value}; shift 2 ;;
            --port=*) port=${1#*=}; shift ;;
            --tls) tls=1; shift ;;
            --name) name=${2:?--name needs a value}; shift 2 ;;
            --name=*) name=${1#*=}; shift ;;
            --consumer-timeout) ctimeout=${2:?--consumer-timeout needs a value}; shift 2 ;;
            --consumer-timeout=*) ctimeout=${1#*=}; shift ;;
            -h|--help) usage 0 ;;
            *) die "start: unknown option '$1'" ;;
        esac
    done
    check_name_and_timeout "$name" "$ctimeout"
    if [ -n "$port" ] && ! { [[ $port =~ ^[0-9]{1,5}$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ]; }; then
        die "--port '$port' is not a port number"
    fi
    need_rabbitmq
    abs_dir "$dir"; dir=$REPLY
    [ -d "$dir/n1" ] && die "$dir holds a cluster (n1/); use another DIR"
    running_in "$dir" && die "a node started by this script already runs in $dir; stop it first: $0 stop $dir"
    if [ -n "$port" ]; then
        port_in_use "$port" && die "port $port is in use"
        PICKED+="$port "
    fi

    t0=$(now_ms)
    CLEANUP_DIRS=("$dir")
    trap cleanup_on_failure EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    [ "$tls" = 1 ] && gen_tls "$dir"
    cookie=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F')
    for attempt in 1 2 3; do
        local amqp_port=$port
        [ -n "$amqp_port" ] || { pick_port; amqp_port=$REPLY; }
        tls_port=
        [ "$tls" = 1 ] && { pick_port; tls_port=$REPLY; }
        pick_port; dist_port=$REPLY
        pick_port; epmd_port=$REPLY
        mkdir -p "$dir/log"
        : >"$dir/log/console.log"
        start_epmd "$dir" "$epmd_port" || { [ "$attempt" -lt 3 ] && continue; die "could not start a private epmd"; }
        prepare_node "$dir" "$name" "$amqp_port" "$tls_port" "$dist_port" "$epmd_port" "$cookie" "$ctimeout"
        say "starting $name@localhost in $dir (amqp $amqp_port${tls_port:+, amqps $tls_port}, dist $dist_port, epmd $epmd_port)"
        launch_node "$dir"
        if wait_node "$dir" "$(( $(date +%s) + START_TIMEOUT ))"; then
            say "node $name@localhost accepts connections after $(secs_since "$t0")s"
            CLEANUP_DIRS=()
            trap - EXIT INT TERM
            echo "amqp://guest@127.0.0.1:$amqp_port/"
            [ -n "$tls_port" ] && echo "amqps://guest@localhost:$tls_port/"
            return 0
        fi
        if [ -z "$port" ] && [ "$attempt" -lt 3 ] && addr_in_use "$dir"; then
            say "a port was taken meanwhile (eaddrinuse); retrying with other ports"
            kill_owned "$dir" 10
            continue
        fi
        show_logs "$dir"
        exit 1
    done
    show_logs "$dir"
    exit 1
}

cmd_cluster() {
    local dir='' k=3 name="ebats-test-$$" ctimeout='' i j d cookie epmd_port t0 deadline n1 out running ports=()
    [ $# -ge 1 ] || usage
    dir=$1
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --nodes) k=${2:?--nodes needs a value}; shift 2 ;;
            --nodes=*) k=${1#*=}; shift ;;
            --name) name=${2:?--name needs a value}; shift 2 ;;
            --name=*) name=${1#*=}; shift ;;
            --consumer-timeout) ctimeout=${2:?--consumer-timeout needs a value}; shift 2 ;;
            --consumer-timeout=*) ctimeout=${1#*=}; shift ;;
            -h|--help) usage 0 ;;
            *) die "cluster: unknown option '$1'" ;;
        esac
    done
    [[ $k =~ ^[1-9]$ ]] || die "--nodes '$k': 1 to 9 nodes"
    check_name_and_timeout "$name" "$ctimeout"
    need_rabbitmq
    abs_dir "$dir"; dir=$REPLY
    [ -f "$dir/node" ] && die "$dir holds a single node; use another DIR"
    for ((i = 1; i <= 9; i++)); do
        running_in "$dir/n$i" && die "a node started by this script already runs in $dir/n$i; stop it first: $0 stop $dir"
    done
    running_in "$dir" && die "processes started by this script still run for $dir; stop it first: $0 stop $dir"

    t0=$(now_ms)
    CLEANUP_DIRS=("$dir")
    for ((i = 1; i <= k; i++)); do CLEANUP_DIRS+=("$dir/n$i"); done
    trap cleanup_on_failure EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    # One cookie and one epmd for all members: Erlang looks up every node of
    # the cluster through the epmd on ERL_EPMD_PORT.
    cookie=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F')
    pick_port; epmd_port=$REPLY
    if ! start_epmd "$dir" "$epmd_port"; then
        pick_port; epmd_port=$REPLY
        start_epmd "$dir" "$epmd_port" || die "could not start a private epmd"
    fi
    echo "$epmd_port" >"$dir/epmd_port"
    for ((i = 1; i <= k; i++)); do
        d=$dir/n$i
        pick_port; ports[i]=$REPLY
        pick_port
        mkdir -p "$d/log"
        : >"$d/log/console.log"
        prepare_node "$d" "$name-n$i" "${ports[i]}" "" "$REPLY" "$epmd_port" "$cookie" "$ctimeout"
    done
    say "starting $k nodes $name-n1..n$k@localhost in $dir (amqp ${ports[*]}, epmd $epmd_port)"
    for ((i = 1; i <= k; i++)); do launch_node "$dir/n$i"; done
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    for ((i = 1; i <= k; i++)); do
        if ! wait_node "$dir/n$i" "$deadline"; then
            for ((j = 1; j <= k; j++)); do show_logs "$dir/n$j"; done
            exit 1
        fi
    done
    say "$k nodes accept connections after $(secs_since "$t0")s; joining n2..n$k to n1"

    n1=$(cat "$dir/n1/node")
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    # One member after the other: concurrent join_cluster calls against the
    # same node are not something to rely on in a test fixture.
    for ((i = 2; i <= k; i++)); do
        d=$dir/n$i
        if ! { node_ctl_t "$START_TIMEOUT" "$d" -q stop_app &&
               node_ctl_t "$START_TIMEOUT" "$d" -q join_cluster "$n1" &&
               node_ctl_t "$START_TIMEOUT" "$d" -q start_app; } >&2; then
            show_logs "$d"
            die "could not join $(cat "$d/node") to $n1"
        fi
    done
    while :; do
        out=$(node_ctl_t 30 "$dir/n1" -q cluster_status --formatter json 2>/dev/null || true)
        running=$(printf '%s' "$out" | grep -o '"running_nodes":\[[^]]*\]' | grep -o '@localhost' | wc -l || true)
        [ "$running" -ge "$k" ] && break
        if [ "$(date +%s)" -ge "$deadline" ]; then
            say "cluster_status of $n1 shows $running running nodes, not $k: $out"
            for ((j = 1; j <= k; j++)); do show_logs "$dir/n$j"; done
            exit 1
        fi
        sleep 0.5
    done
    say "cluster of $k nodes running after $(secs_since "$t0")s"
    CLEANUP_DIRS=()
    trap - EXIT INT TERM
    printf '%s\n' "${ports[@]}" >"$dir/ports"
    for ((i = 1; i <= k; i++)); do echo "amqp://guest@127.0.0.1:${ports[i]}/"; done
}

cmd_stop() {
    local dir i pids=()
    [ $# -eq 1 ] || usage
    existing_dir "$1"; dir=$REPLY
    [ -n "$dir" ] || return 0
    if [ -d "$dir/n1" ]; then
        for ((i = 1; i <= 9; i++)); do
            [ -d "$dir/n$i" ] || continue
            stop_node "$dir/n$i" &
            pids+=($!)
        done
        for i in "${pids[@]}"; do wait "$i" || true; done
    fi
    stop_node "$dir"
    return 0
}

# crash DIR: kills the node's VM with SIGKILL, as a power cut or the OOM
# killer would (its private epmd, shared by a cluster, stays).
cmd_crash() {
    local dir beam i
    [ $# -eq 1 ] || usage
    existing_dir "$1"; dir=$REPLY
    [ -n "$dir" ] && [ -f "$dir/node" ] || die "no node was started in $1"
    beam=$(cat "$dir/pid" 2>/dev/null || cat "$dir/beam.pid" 2>/dev/null || true)
    owned "$beam" "$dir" || die "the node in $dir is not running"
    kill -KILL "$beam"
    for ((i = 0; i < 100; i++)); do owned "$beam" "$dir" || break; sleep 0.1; done
    rm -f "$dir/pid"
    say "killed $(cat "$dir/node") (VM pid $beam)"
}

# restart DIR: starts a node again that `crash` or `stop` ended, with its
# ports, name, cookie and data (a cluster member rejoins its cluster).
cmd_restart() {
    local dir t0 beam
    [ $# -eq 1 ] || usage
    existing_dir "$1"; dir=$REPLY
    [ -n "$dir" ] && [ -f "$dir/env" ] || die "no node was started in $1"
    need_rabbitmq
    beam=$(cat "$dir/beam.pid" 2>/dev/null || true)
    owned "$beam" "$dir" && die "the node in $dir still runs"
    t0=$(now_ms)
    launch_node "$dir"
    wait_node "$dir" "$(( $(date +%s) + START_TIMEOUT ))" || { show_logs "$dir"; exit 1; }
    say "restarted $(cat "$dir/node") in $(secs_since "$t0")s"
}

cmd_ctl() {
    local dir
    [ $# -ge 1 ] || usage
    existing_dir "$1"; dir=$REPLY
    [ -n "$dir" ] || die "no such directory: $1"
    shift
    [ ! -f "$dir/env" ] && [ -f "$dir/n1/env" ] && dir=$dir/n1
    if [ ! -f "$dir/env" ] || [ ! -f "$dir/node" ]; then die "no node was started in $dir"; fi
    need_rabbitmq
    # shellcheck disable=SC1091
    . "$dir/env"
    # rabbitmqctl starts an epmd on ERL_EPMD_PORT when none answers there,
    # which would outlive this call: refuse instead (69 = EX_UNAVAILABLE, what
    # rabbitmqctl itself returns for an unreachable node).
    if ! epmd -port "$ERL_EPMD_PORT" -names >/dev/null 2>&1; then
        say "the node in $dir is not running (its private epmd on port $ERL_EPMD_PORT is down)"
        exit 69
    fi
    exec "$RMQ_BIN/rabbitmqctl" -n "$(cat "$dir/node")" "$@"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
    start) cmd_start "$@" ;;
    cluster) cmd_cluster "$@" ;;
    stop) cmd_stop "$@" ;;
    ctl) cmd_ctl "$@" ;;
    crash) cmd_crash "$@" ;;
    restart) cmd_restart "$@" ;;
    -h|--help|help) usage 0 ;;
    *) say "unknown command '$cmd'"; usage ;;
esac
