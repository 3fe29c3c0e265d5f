"""bench_smoke_idle: starling-bench idle against starling and against
starling-bench-echo.

Starts each server on a free loopback port, waits (bounded) until it
accepts, runs `starling-bench idle --count 200 --hold 1 --server-pid PID`
(XMPP streams against starling, --raw against the echo server), and checks
the exit status and the JSON report: 200 established, 0 failed. Then stops
the server with SIGTERM and checks that it exits 0. No timing assertions.
"""
import os
import socket
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the smoke tests' shared helpers)

START_TIMEOUT_S = 10
COUNT = 200


def accepting(port):
    """True when something accepts a connection on the loopback port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def run_bench(bench, port, pid, mode, workdir):
    command = [bench, "idle", "--port", str(port), "--count", str(COUNT), "--hold", "1",
               "--server-pid", str(pid), f"--{mode}"]
    result, report = benchlib.run_json(command, workdir, f"idle-{mode}", required=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited with {result.returncode}")
    if report is None:
        raise AssertionError(f"{mode}: no JSON report")
    connections = report["connections"]
    if connections["established"] != COUNT or connections["failed"] != 0:
        raise AssertionError(f"{mode}: expected {COUNT} established and 0 failed: {connections}")
    if report["server"]["rss_bytes_after"] is None:
        raise AssertionError(f"{mode}: the server's RSS was not sampled")


def check_server(name, server_command, bench, mode, workdir):
    port = benchlib.free_port()
    log_path = os.path.join(workdir, f"{name}.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(server_command + ["--port", str(port), "--reactors", "2"],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        benchlib.wait_until(name, lambda: accepting(port), process, START_TIMEOUT_S, log_path,
                            interval_s=0.05)
        run_bench(bench, port, process.pid, mode, workdir)
    except BaseException:
        benchlib.stop_process(process)
        raise
    # It must exit 0, on SIGTERM now or by itself before (SIGKILL after the
    # bound shows as a negative status).
    status = benchlib.stop_process(process)
    if status != 0:
        raise AssertionError(f"{name} exited with {status} (SIGTERM, then SIGKILL after "
                             f"{benchlib.STOP_TIMEOUT_S} s):\n{benchlib.read(log_path)[-4000:]}")
    print(f"{name}: ok")


def main():
    arguments = benchlib.parse_args("--bench", "--echo", "--starling")
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as workdir:
        check_server("starling", [arguments.starling], arguments.bench, "xmpp", workdir)
        check_server("starling-bench-echo", [arguments.echo], arguments.bench, "raw", workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
