"""bench_smoke_idle: starling-bench idle against starling and against
starling-bench-echo.

Starts each server on a free loopback port, waits (bounded) until it
accepts, runs `starling-bench idle --count 200 --hold 1 --server-pid PID`
(XMPP streams against starling, --raw against the echo server), and checks
the exit status and the JSON report: 200 established, 0 failed. Then stops
the server with SIGTERM and checks that it exits 0. No timing assertions.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

START_TIMEOUT_S = 10
BENCH_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20
COUNT = 200


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_accepting(process, port, log_path):
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{read(log_path)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"server did not accept within {START_TIMEOUT_S} s")


def read(path):
    with open(path, "rb") as f:
        return f.read().decode(errors="replace")


def stop(process, log_path):
    process.send_signal(signal.SIGTERM)
    try:
        status = process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"server ignored SIGTERM for {STOP_TIMEOUT_S} s")
    if status != 0:
        raise AssertionError(f"server exited with {status}:\n{read(log_path)[-4000:]}")


def run_bench(bench, port, pid, mode, workdir):
    json_path = os.path.join(workdir, f"idle-{mode}.json")
    command = [bench, "idle", "--port", str(port), "--count", str(COUNT), "--hold", "1",
               "--server-pid", str(pid), "--json", json_path, f"--{mode}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited with {result.returncode}")
    with open(json_path) as f:
        report = json.load(f)
    connections = report["connections"]
    if connections["established"] != COUNT or connections["failed"] != 0:
        raise AssertionError(f"{mode}: expected {COUNT} established and 0 failed: {connections}")
    if report["server"]["rss_bytes_after"] is None:
        raise AssertionError(f"{mode}: the server's RSS was not sampled")


def check_server(name, server_command, bench, mode, workdir):
    port = free_port()
    log_path = os.path.join(workdir, f"{name}.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(server_command + ["--port", str(port), "--reactors", "2"],
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_accepting(process, port, log_path)
            run_bench(bench, port, process.pid, mode, workdir)
        finally:
            if process.poll() is None:
                stop(process, log_path)
            elif process.returncode != 0:
                raise AssertionError(f"{name} died with {process.returncode}:\n{read(log_path)}")
    print(f"{name}: ok")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bench", required=True)
    parser.add_argument("--echo", required=True)
    parser.add_argument("--starling", required=True)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as workdir:
        check_server("starling", [arguments.starling], arguments.bench, "xmpp", workdir)
        check_server("starling-bench-echo", [arguments.echo], arguments.bench, "raw", workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
