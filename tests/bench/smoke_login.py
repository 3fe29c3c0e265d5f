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
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the smoke tests' shared helpers)
from benchlib import provision  # noqa: E402

COUNT = 200


def run_login(bench, port, work, name, extra):
    result, report = benchlib.run_json(benchlib.bench_command(bench, "login", port, COUNT,
                                                              password=None, extra=extra),
                                       work, name)
    return result.returncode, report


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
    args = benchlib.parse_args()
    if benchlib.missing((benchlib.PROSODY, "prosody")):
        return 1
    with benchlib.work_dir("starling-smoke-login-") as work:
        port = benchlib.free_port()
        provision.provision_prosody(os.path.join(work, "data"), COUNT)
        with benchlib.prosody(work, port):
            check_success(args.bench, port, work, "SCRAM-SHA-1")
            check_success(args.bench, port, work, "PLAIN")
            check_wrong_password(args.bench, port, work)
    print("bench_smoke_login: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
