"""bench_smoke_idle_login: starling-bench idle --login against a private Prosody.

Generates a throwaway self-signed certificate for localhost (smoke_tls.py's
helper) and starts Prosody with mod_tls enabled (smoke_tls.py's template
copy, smoke_login.py's start and stop), so one server answers both
plaintext and STARTTLS. Then, for plaintext and for --tls starttls,
`starling-bench idle --login --count 200 --hold 1 --server-pid <prosody>`
must exit 0, and its JSON report must say: scenario idle, mode login, 200
online, 0 failed, 0 dropped, 200 online at the end of the hold, the
server's VmRSS sampled before and after (non-null, after > 0), and bytes
per session (rss_bytes_per_connection) reported; the human summary must
name the bytes per session. A last run with --server-pid of a process that
does not exist must be a usage error (exit 2). Stops the Prosody it started
(only that process). No timing or size assertions: the numbers belong in
bench/RESULTS.md.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smoke_login  # noqa: E402  (its Prosody helpers)
import smoke_tls  # noqa: E402  (its certificate and template helpers)
from smoke_login import provision  # noqa: E402

COUNT = 200
HOLD_S = 1
BENCH_TIMEOUT_S = 90
PORT_TRIES_MAX = 10
PID_MAX = 4194304  # PID_MAX_LIMIT: no process has a larger pid


def run_idle(bench, port, work, name, extra):
    json_path = os.path.join(work, f"{name}.json")
    command = [bench, "idle", "--login", "--host", "127.0.0.1", "--port", str(port),
               "--domain", "localhost", "--users", "user%d", "--password", provision.PASSWORD,
               "--count", str(COUNT), "--hold", str(HOLD_S), "--reactors", "2",
               "--timeout-s", "30", "--no-progress", "--json", json_path] + extra
    result = subprocess.run(command, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S)
    print(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}", flush=True)
    report = None
    if os.path.exists(json_path):
        with open(json_path) as f:
            report = json.load(f)
    return result, report


def check_held(bench, port, work, name, pid, extra):
    result, report = run_idle(bench, port, work, name, ["--server-pid", str(pid)] + extra)
    if report is None:
        raise AssertionError(f"{name}: no JSON report (exit {result.returncode})")
    sessions, server, idle = report["sessions"], report["server"], report["idle"]
    problems = []
    if result.returncode != 0:
        problems.append(f"exit {result.returncode}")
    if report["scenario"] != "idle" or idle["mode"] != "login":
        problems.append(f"scenario {report['scenario']}, idle {idle}")
    if sessions["online"] != COUNT or sessions["failed"] != 0:
        problems.append(f"sessions {sessions}")
    if idle["dropped"] != 0 or idle["online_at_end_of_hold"] != COUNT:
        problems.append(f"idle {idle}")
    if report["memory_sample"]["online"] != COUNT:
        problems.append(f"memory_sample {report['memory_sample']}")
    if server["pid"] != pid:
        problems.append(f"server pid {server['pid']}, not {pid}")
    if server["rss_bytes_before"] is None or not server["rss_bytes_after"]:
        problems.append(f"server RSS not sampled: {server}")
    if server["rss_bytes_per_connection"] is None:
        problems.append(f"no bytes per session: {server}")
    if "bytes per session" not in result.stdout:
        problems.append("the summary names no bytes per session")
    if report["options"]["tls"] != (extra[1] if extra else "none"):
        problems.append(f"options {report['options']}")
    if problems:
        raise AssertionError(f"{name}: " + "; ".join(problems))


def check_no_such_pid(bench, port, work):
    result, _ = run_idle(bench, port, work, "no-such-pid", ["--server-pid", str(PID_MAX)])
    if result.returncode != 2 or "no such process" not in result.stderr:
        raise AssertionError(f"--server-pid {PID_MAX}: exit {result.returncode}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", required=True)
    args = parser.parse_args()
    for needed, package in ((smoke_login.PROSODY, "prosody"), (smoke_tls.OPENSSL, "openssl")):
        if not os.path.exists(needed):
            print(f"FAIL: {needed} is missing: apt-get install {package} (see deploy/setup)",
                  file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="starling-smoke-idle-login-")
    certs = os.path.join(work, "certs")
    os.makedirs(certs)
    smoke_tls.make_certificate(certs, "localhost", ["localhost"])
    port = smoke_login.free_port()
    direct_port = next((p for p in (smoke_login.free_port() for _ in range(PORT_TRIES_MAX))
                        if p != port), None)
    if direct_port is None:
        raise AssertionError(f"no second free port in {PORT_TRIES_MAX} tries")
    # start_prosody fills the template it finds under SERVERS_DIR.
    smoke_login.SERVERS_DIR = smoke_tls.write_template(work, direct_port)
    provision.provision_prosody(os.path.join(work, "data"), COUNT)
    process = smoke_login.start_prosody(work, port)
    try:
        check_held(args.bench, port, work, "plaintext", process.pid, [])
        check_held(args.bench, port, work, "starttls", process.pid, ["--tls", "starttls"])
        check_no_such_pid(args.bench, port, work)
    except AssertionError:
        print(f"prosody errors:\n{smoke_login.read(os.path.join(work, 'prosody.err'))}",
              file=sys.stderr)
        raise
    finally:
        smoke_login.stop_prosody(process)
    shutil.rmtree(work, ignore_errors=True)
    print("bench_smoke_idle_login: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
