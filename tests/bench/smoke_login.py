"""bench_smoke_login: starling-bench login against a private Prosody.

Starts Prosody exactly as bench/compare does (benchlib.py: the template
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
import functools
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
    benchlib.check_all_online(mechanism, status, report, COUNT)
    if report["timing"]["logins_per_second"] is None:
        raise AssertionError(f"{mechanism}: no logins/s in {report['timing']}")


def check_wrong_password(bench, port, work):
    status, report = run_login(bench, port, work, "wrong-password",
                               ["--password", "wrong", "--mechanism", "SCRAM-SHA-1"])
    benchlib.check_auth_refused("wrong password", status, report, COUNT)


def main():
    return benchlib.prosody_main("bench_smoke_login", COUNT, (
        functools.partial(check_success, mechanism="SCRAM-SHA-1"),
        functools.partial(check_success, mechanism="PLAIN"),
        check_wrong_password))


if __name__ == "__main__":
    sys.exit(main())
