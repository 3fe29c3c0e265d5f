"""benchlib: the helpers the bench smoke tests (tests/bench/smoke_*.py) share.

Running starling-bench (the common arguments, a bounded run that prints
its command and output, its JSON report), a private Prosody on a free
loopback port (the template bench/servers/prosody/prosody.cfg.lua filled
into the test's work directory, as bench/compare does; optionally with
mod_tls on and a direct TLS port, and a throwaway certificate made with
the openssl CLI), stopping exactly the processes a test started, the
--bench style command line, and bounded waits. Not a test itself.
"""
import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SERVERS_DIR = os.path.join(REPO, "bench", "servers")
sys.path.insert(0, SERVERS_DIR)
import provision  # noqa: E402  (bench/servers/provision.py)

PROSODY = "/usr/bin/prosody"
OPENSSL = "/usr/bin/openssl"
READY_TIMEOUT_S = 30
BENCH_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20
OPENSSL_TIMEOUT_S = 60
PORT_TRIES_MAX = 10  # free_ports: draws before giving up on distinct ports
READY_PROBE_TIMEOUT_S = 2.0
READY_PROBE_BYTES_MAX = 65536  # a stream header's answer is far smaller
STREAM_HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
                 b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
# The Prosody template's lines that write_prosody_template edits.
DIRECT_TLS_LINE = "c2s_direct_tls_ports = { }"
TLS_DISABLED_LINE = 'modules_disabled = { "s2s", "tls" }'


def parse_args(*required):
    """The test's command line: each name in required (default --bench) is a
    required option naming a file."""
    parser = argparse.ArgumentParser()
    for name in required or ("--bench",):
        parser.add_argument(name, required=True)
    return parser.parse_args()


def missing(*needed):
    """Prints a FAIL line for each (program, package) absent and returns
    True if any is; a test then fails rather than passing without running.
    A program is an absolute path or a name looked up on PATH."""
    absent = [(program, package) for program, package in needed
              if not (os.path.exists(program) if os.path.isabs(program)
                      else shutil.which(program))]
    for program, package in absent:
        print(f"FAIL: {program} is missing: apt-get install {package} (see deploy/setup)",
              file=sys.stderr)
    return bool(absent)


@contextlib.contextmanager
def work_dir(prefix):
    """A private temporary directory, removed when the block succeeds and
    left behind for inspection when it fails."""
    work = tempfile.mkdtemp(prefix=prefix)
    yield work
    shutil.rmtree(work, ignore_errors=True)


def free_port():
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_ports(count):
    """count distinct free loopback ports, in at most PORT_TRIES_MAX draws."""
    ports = []
    for _ in range(PORT_TRIES_MAX):
        port = free_port()
        if port not in ports:
            ports.append(port)
        if len(ports) == count:
            return ports
    raise AssertionError(f"no {count} distinct free ports in {PORT_TRIES_MAX} tries")


def read(path):
    """A file's text ("" if it cannot be read), for error messages."""
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def wait_until(what, ready, process, timeout_s, log_path, interval_s=0.2):
    """Polls ready() until it returns a true value, which is returned. If
    process exits first or timeout_s passes, stops process and raises."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode} before it was "
                                 f"ready:\n{read(log_path)}")
        answer = ready()
        if answer:
            return answer
        if time.monotonic() > deadline:
            stop_process(process)
            raise AssertionError(f"{what} was not ready within {timeout_s} s:\n"
                                 f"{read(log_path)}")
        time.sleep(interval_s)


def stop_process(process, timeout_s=STOP_TIMEOUT_S):
    """Stops exactly the process we started: SIGTERM, a bounded wait, SIGKILL
    as a last resort. Its exit status (negative: the signal that ended it)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)
    return process.returncode


def xmpp_ready(port, timeout=READY_PROBE_TIMEOUT_S):
    """True when the server answers a client stream header with stream features."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(STREAM_HEADER)
            data, deadline = b"", time.monotonic() + timeout
            while time.monotonic() < deadline and len(data) < READY_PROBE_BYTES_MAX:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                data += chunk
                if b"</stream:features>" in data or b"<stream:features/>" in data:
                    return True
    except OSError:
        return False
    return False


def start_prosody(work, port, servers_dir=SERVERS_DIR):
    """Starts a private Prosody (as bench/compare's start_prosody) from the
    template under servers_dir, and waits (bounded) until it answers."""
    os.makedirs(os.path.join(work, "data"), exist_ok=True)
    os.makedirs(os.path.join(work, "certs"), exist_ok=True)
    with open(os.path.join(servers_dir, "prosody", "prosody.cfg.lua")) as f:
        template = f.read()
    config = os.path.join(work, "prosody.cfg.lua")
    with open(config, "w") as f:
        f.write(template.replace("@PORT@", str(port)).replace("@WORKDIR@", work))
    log_path = os.path.join(work, "prosody.stdout.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([PROSODY, "-F", "--config", config], cwd=work, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        wait_until("prosody", lambda: xmpp_ready(port), process, READY_TIMEOUT_S, log_path)
    except AssertionError as error:
        raise AssertionError(f"{error}{read(os.path.join(work, 'prosody.err'))}") from None
    return process


@contextlib.contextmanager
def prosody(work, port, servers_dir=SERVERS_DIR):
    """A private Prosody for the block (start_prosody); its errors are printed
    when the block fails, and it is stopped (only that process) either way."""
    process = start_prosody(work, port, servers_dir)
    try:
        yield process
    except AssertionError:
        print(f"prosody errors:\n{read(os.path.join(work, 'prosody.err'))}", file=sys.stderr)
        raise
    finally:
        stop_process(process)


def make_certificate(directory, name, subject_names):
    """A self-signed RSA certificate NAME.crt with key NAME.key in directory."""
    command = [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
               "-subj", f"/CN={subject_names[0]}",
               "-addext", "subjectAltName=" + ",".join(f"DNS:{n}" for n in subject_names),
               "-keyout", os.path.join(directory, f"{name}.key"),
               "-out", os.path.join(directory, f"{name}.crt")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_S)
    if result.returncode != 0:
        raise AssertionError(f"openssl req failed: {result.stderr}")
    return os.path.join(directory, f"{name}.crt")


def write_prosody_template(work, direct_port):
    """A copy of the Prosody template with mod_tls enabled and the direct TLS
    port filled in; the servers directory to pass to start_prosody. Prosody
    finds the certificates in WORK/certs (make_certificate's localhost)."""
    with open(os.path.join(SERVERS_DIR, "prosody", "prosody.cfg.lua")) as f:
        template = f.read()
    for line in (DIRECT_TLS_LINE, TLS_DISABLED_LINE):
        if line not in template:
            raise AssertionError(f"the Prosody template has no '{line}' line")
    template = template.replace(TLS_DISABLED_LINE, 'modules_disabled = { "s2s" }')
    servers = os.path.join(work, "servers")
    os.makedirs(os.path.join(servers, "prosody"))
    with open(os.path.join(servers, "prosody", "prosody.cfg.lua"), "w") as f:
        f.write(template.replace(DIRECT_TLS_LINE, f"c2s_direct_tls_ports = {{ {direct_port} }}"))
    return servers


def bench_command(bench, scenario, port, count, *, domain="localhost", users="user%d",
                  password=provision.PASSWORD, sources=2, extra=()):
    """starling-bench SCENARIO against 127.0.0.1:port with the smoke tests'
    usual options; domain, users, password or sources None leaves it out."""
    command = [bench] + scenario.split() + ["--host", "127.0.0.1", "--port", str(port),
                                            "--count", str(count), "--reactors", "2",
                                            "--timeout-s", "30"]
    for option, value in (("--domain", domain), ("--users", users),
                          ("--password", password), ("--sources", sources)):
        if value is not None:
            command += [option, str(value)]
    return command + list(extra)


def run_printed(command, timeout_s=BENCH_TIMEOUT_S):
    """Runs command (bounded by timeout_s), prints it with its exit status,
    wall time and output; the CompletedProcess (text)."""
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    print(f"$ {' '.join(command)}  ({time.monotonic() - started:.1f} s, exit "
          f"{result.returncode})\n{result.stdout}{result.stderr}", flush=True)
    return result


def load_report(json_path):
    """The JSON report at json_path, None if the run wrote none."""
    if not os.path.exists(json_path):
        return None
    with open(json_path) as f:
        return json.load(f)


def run_json(command, work, name, timeout_s=BENCH_TIMEOUT_S, required=True):
    """Runs command with --json WORK/NAME.json (run_printed); (the
    CompletedProcess, the report). Without a report: raises if required,
    else the report is None."""
    json_path = os.path.join(work, f"{name}.json")
    result = run_printed(command + ["--json", json_path], timeout_s)
    report = load_report(json_path)
    if report is None and required:
        raise AssertionError(f"{name}: no JSON report (exit {result.returncode})")
    return result, report


def check_all_online(name, status, report, count):
    """The run exited 0 with count sessions online and none failed."""
    sessions = report["sessions"]
    if status != 0 or sessions["online"] != count or sessions["failed"] != 0:
        raise AssertionError(f"{name}: exit {status}, sessions {sessions}")


def check_auth_refused(name, status, report, count):
    """The run exited 1 with no session online and count auth failures,
    every one not-authorized (a wrong password)."""
    sessions = report["sessions"]
    auth = sessions["conditions"].get("auth", {})
    if (status != 1 or sessions["online"] != 0 or sessions["failures"]["auth"] != count
            or auth.get("not-authorized") != count):
        raise AssertionError(f"{name}: exit {status}, sessions {sessions}")


def prosody_main(name, count, checks, roster=0, needs=()):
    """main() of a smoke test against a private Prosody: the --bench command
    line, Prosody and the (program, package) pairs in needs present, count
    accounts provisioned (with ring rosters of roster contacts if roster),
    then each check(bench, port, work) in order while Prosody runs. 0 when
    every check passed, 1 when a program is missing; a failed check raises."""
    args = parse_args()
    if missing((PROSODY, "prosody"), *needs):
        return 1
    with work_dir(f"starling-{name}-") as work:
        port = free_port()
        provision.provision_prosody(os.path.join(work, "data"), count, roster=roster)
        with prosody(work, port):
            for check in checks:
                check(args.bench, port, work)
    print(f"{name}: ok")
    return 0
