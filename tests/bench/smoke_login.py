"""bench_smoke_login: starling-bench login against a private Prosody.

Starts Prosody exactly as bench/compare does (the template
bench/servers/prosody/prosody.cfg.lua filled into a private work directory,
`prosody -F`, accounts written by bench/servers/provision.py), on a free
loopback port, waits (bounded) until it answers a stream header, and runs
`starling-bench login --count 200` three times: SCRAM-SHA-1 and PLAIN must
exit 0 with 200 online and 0 failed in the JSON report; a wrong password
must exit 1 with 200 auth failures whose condition is not-authorized. Then
stops the Prosody it started (only that process). No timing assertions.

Prosody is required: without /usr/bin/prosody the test fails (install the
packages named in deploy/setup) rather than passing without running.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SERVERS_DIR = os.path.join(REPO, "bench", "servers")
sys.path.insert(0, SERVERS_DIR)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import provision  # noqa: E402  (bench/servers/provision.py)

PROSODY = "/usr/bin/prosody"
READY_TIMEOUT_S = 30
BENCH_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20
COUNT = 200
STREAM_HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
                 b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def xmpp_ready(port, timeout=2.0):
    """True when the server answers a client stream header with stream features."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(STREAM_HEADER)
            data, deadline = b"", time.monotonic() + timeout
            while time.monotonic() < deadline and len(data) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                data += chunk
                if b"</stream:features>" in data or b"<stream:features/>" in data:
                    return True
    except OSError:
        return False
    return False


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def start_prosody(work, port):
    """Starts a private Prosody (as bench/compare's start_prosody) and waits for it."""
    os.makedirs(os.path.join(work, "data"), exist_ok=True)
    os.makedirs(os.path.join(work, "certs"), exist_ok=True)
    with open(os.path.join(SERVERS_DIR, "prosody", "prosody.cfg.lua")) as f:
        template = f.read()
    config = os.path.join(work, "prosody.cfg.lua")
    with open(config, "w") as f:
        f.write(template.replace("@PORT@", str(port)).replace("@WORKDIR@", work))
    log_path = os.path.join(work, "prosody.stdout.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([PROSODY, "-F", "--config", config], cwd=work, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prosody exited with {process.returncode}:\n{read(log_path)}"
                                 f"{read(os.path.join(work, 'prosody.err'))}")
        if xmpp_ready(port):
            return process
        time.sleep(0.2)
    stop_prosody(process)
    raise AssertionError(f"prosody did not answer a stream header within {READY_TIMEOUT_S} s")


def stop_prosody(process):
    """Stops exactly the process we started."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_login(bench, port, work, name, extra):
    json_path = os.path.join(work, f"{name}.json")
    command = [bench, "login", "--host", "127.0.0.1", "--port", str(port), "--domain", "localhost",
               "--users", "user%d", "--count", str(COUNT), "--reactors", "2", "--sources", "2",
               "--timeout-s", "30", "--json", json_path] + extra
    result = subprocess.run(command, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S)
    print(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}", flush=True)
    if not os.path.exists(json_path):
        raise AssertionError(f"{name}: no JSON report (exit {result.returncode})")
    with open(json_path) as f:
        return result.returncode, json.load(f)


def check_success(bench, port, work, mechanism):
    status, report = run_login(bench, port, work, mechanism,
                               ["--password", provision.PASSWORD, "--mechanism", mechanism])
    sessions = report["sessions"]
    if status != 0 or sessions["online"] != COUNT or sessions["failed"] != 0:
        raise AssertionError(f"{mechanism}: exit {status}, sessions {sessions}")
    if report["timing"]["logins_per_second"] is None:
        raise AssertionError(f"{mechanism}: no logins/s in {report['timing']}")


def check_wrong_password(bench, port, work):
    status, report = run_login(bench, port, work, "wrong-password",
                               ["--password", "wrong", "--mechanism", "SCRAM-SHA-1"])
    sessions = report["sessions"]
    auth = sessions["conditions"].get("auth", {})
    if (status != 1 or sessions["online"] != 0 or sessions["failures"]["auth"] != COUNT
            or auth.get("not-authorized") != COUNT):
        raise AssertionError(f"wrong password: exit {status}, sessions {sessions}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", required=True)
    args = parser.parse_args()
    if not os.path.exists(PROSODY):
        print(f"FAIL: {PROSODY} is missing: apt-get install prosody (see deploy/setup)",
              file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="starling-smoke-login-")
    port = free_port()
    provision.provision_prosody(os.path.join(work, "data"), COUNT)
    process = start_prosody(work, port)
    try:
        check_success(args.bench, port, work, "SCRAM-SHA-1")
        check_success(args.bench, port, work, "PLAIN")
        check_wrong_password(args.bench, port, work)
    except AssertionError:
        print(f"prosody errors:\n{read(os.path.join(work, 'prosody.err'))}", file=sys.stderr)
        raise
    finally:
        stop_prosody(process)
    shutil.rmtree(work, ignore_errors=True)
    print("bench_smoke_login: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
