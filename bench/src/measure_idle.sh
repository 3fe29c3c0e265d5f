#!/usr/bin/env bash
# measure_idle.sh: the idle-connection measurements of bench/RESULTS.md.
#
# For each configuration it starts a fresh server (slab pages a server has
# touched once stay resident, so reusing one would hide the growth), runs
# `starling-bench idle` against it, and while the connections are held
# checks the tool's numbers independently: the established sockets on the
# server port from `ss`, and the server's RSS from `ps -o rss`.
#
# usage: bench/src/measure_idle.sh BUILD_DIR OUT_DIR [COUNT] [RUNS]
# (a Release build: cmake -DCMAKE_BUILD_TYPE=Release). Every step is bounded
# by `timeout`; a server that ignores SIGTERM is killed after 20 s.
set -euo pipefail

build=${1:?usage: measure_idle.sh BUILD_DIR OUT_DIR [COUNT] [RUNS]}
out=${2:?usage: measure_idle.sh BUILD_DIR OUT_DIR [COUNT] [RUNS]}
count=${3:-10000}
runs=${4:-3}
hold_s=10
bench=$build/bench/src/starling-bench
echo_server=$build/bench/src/starling-bench-echo
starling=$build/server/xmpp/starling
long_ms=3600000
mkdir -p "$out"

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_accepting() { # port
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "server on port $1 did not accept within 10 s" >&2
    return 1
}

stop_server() { # pid
    kill -TERM "$1"
    for _ in $(seq 1 200); do
        if ! kill -0 "$1" 2>/dev/null; then wait "$1" || true; return 0; fi
        sleep 0.1
    done
    kill -KILL "$1"
    wait "$1" || true
    echo "server $1 ignored SIGTERM for 20 s" >&2
}

# Polls ss until count sockets are established on the server port (at most
# 30 s), then prints "ss=N ps_rss_kib=R" for the record.
independent_check() { # port pid
    local established=0
    for _ in $(seq 1 300); do
        established=$(ss -Htn state established "( sport = :$1 )" | wc -l)
        [ "$established" -ge "$count" ] && break
        sleep 0.1
    done
    echo "ss_established=$established ps_rss_kib=$(ps -o rss= -p "$2" | tr -d ' ')" \
        "loadavg=$(cut -d' ' -f1 /proc/loadavg)"
}

# name, server pin ("" or a core), bench pin, mode flag, server command...
measure() {
    local name=$1 server_core=$2 bench_core=$3 mode=$4
    shift 4
    local port pid json
    port=$(free_port)
    local server_prefix=() bench_prefix=()
    [ -n "$server_core" ] && server_prefix=(taskset -c "$server_core")
    [ -n "$bench_core" ] && bench_prefix=(taskset -c "$bench_core")
    "${server_prefix[@]}" "$@" --port "$port" >"$out/$name.server.log" 2>&1 &
    pid=$!
    wait_accepting "$port"
    # Let the server, and the kernel's freeing of the previous run's sockets
    # (RCU-deferred), settle before the "before" sample.
    sleep 3
    json=$out/$name.json
    timeout 300 "${bench_prefix[@]}" "$bench" idle --port "$port" --count "$count" \
        --hold "$hold_s" "$mode" --server-pid "$pid" --json "$json" >"$out/$name.txt" &
    local bench_pid=$!
    independent_check "$port" "$pid" >"$out/$name.check"
    wait "$bench_pid" || echo "$name: starling-bench exited with $?" >&2
    stop_server "$pid"
    echo "== $name: $(cat "$out/$name.check")"
    cat "$out/$name.txt"
}

for run in $(seq 1 "$runs"); do
    measure "echo-pinned-$run" 0 1 --raw "$echo_server" --reactors 1 \
        --handshake-timeout-ms $long_ms --idle-timeout-ms $long_ms
    measure "starling-pinned-$run" 0 1 --xmpp "$starling" --reactors 1 \
        --handshake-timeout-ms $long_ms --idle-timeout-ms $long_ms
done
measure "echo-2reactors" "" "" --raw "$echo_server" --reactors 2 \
    --handshake-timeout-ms $long_ms --idle-timeout-ms $long_ms
measure "starling-2reactors" "" "" --xmpp "$starling" --reactors 2 \
    --handshake-timeout-ms $long_ms --idle-timeout-ms $long_ms
