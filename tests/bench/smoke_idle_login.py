"""bench_smoke_idle_login: starling-bench idle --login against a private Prosody.

Generates a throwaway self-signed certificate for localhost and starts
Prosody with mod_tls enabled (benchlib.py's certificate, template copy,
start and stop, as smoke_tls.py uses them), so one server answers both
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
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the smoke tests' shared helpers)
from benchlib import provision  # noqa: E402

COUNT = 200
HOLD_S = 1
BENCH_TIMEOUT_S = 90
PID_MAX = 4194304  # PID_MAX_LIMIT: no process has a larger pid


def run_idle(bench, port, work, name, extra):
    command = benchlib.bench_command(bench, "idle --login", port, COUNT, sources=None,
                                     extra=["--hold", str(HOLD_S), "--no-progress"] + extra)
    return benchlib.run_json(command, work, name, BENCH_TIMEOUT_S, required=False)


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
    args = benchlib.parse_args()
    if benchlib.missing((benchlib.PROSODY, "prosody"), (benchlib.OPENSSL, "openssl")):
        return 1
    with benchlib.work_dir("starling-smoke-idle-login-") as work:
        certs = os.path.join(work, "certs")
        os.makedirs(certs)
        benchlib.make_certificate(certs, "localhost", ["localhost"])
        port, direct_port = benchlib.free_ports(2)
        servers = benchlib.write_prosody_template(work, direct_port)
        provision.provision_prosody(os.path.join(work, "data"), COUNT)
        with benchlib.prosody(work, port, servers) as process:
            check_held(args.bench, port, work, "plaintext", process.pid, [])
            check_held(args.bench, port, work, "starttls", process.pid, ["--tls", "starttls"])
            check_no_such_pid(args.bench, port, work)
    print("bench_smoke_idle_login: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
