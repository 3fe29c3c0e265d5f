"""bench_smoke_scenarios: starling-bench reconnect and chat against a private Prosody.

Starts Prosody as smoke_login.py does (its helpers: the bench/servers
template, provisioned accounts, a free loopback port, a bounded readiness
wait), then:
  reconnect --count 100: exit 0, 100 online in the first wave and in the
    second (after all connections were aborted at once), 0 failed in both;
  chat --count 100 --rate 500 --duration 2 --drain 2: exit 0, sent > 0,
    delivered == sent, lost 0, duplicates 0.
Stops the Prosody it started (only that process). No timing assertions.
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
from smoke_login import provision  # noqa: E402

COUNT = 100
BENCH_TIMEOUT_S = 60


def run_bench(bench, port, work, scenario, extra):
    json_path = os.path.join(work, f"{scenario}.json")
    command = [bench, scenario, "--host", "127.0.0.1", "--port", str(port), "--domain",
               "localhost", "--users", "user%d", "--password", provision.PASSWORD, "--count",
               str(COUNT), "--reactors", "2", "--sources", "2", "--timeout-s", "30", "--json",
               json_path] + extra
    result = subprocess.run(command, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S)
    print(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}", flush=True)
    if not os.path.exists(json_path):
        raise AssertionError(f"{scenario}: no JSON report (exit {result.returncode})")
    with open(json_path) as f:
        return result.returncode, json.load(f)


def check_reconnect(bench, port, work):
    status, report = run_bench(bench, port, work, "reconnect", ["--hold", "1"])
    first, second = report["first_wave"], report["sessions"]
    if (status != 0 or first["online"] != COUNT or first["failed"] != 0
            or second["online"] != COUNT or second["failed"] != 0
            or not report["reconnect"]["dropped"]):
        raise AssertionError(f"reconnect: exit {status}, first {first}, second {second}")
    if report["timing"]["all_online_ms"] is None:
        raise AssertionError(f"reconnect: no time to recover in {report['timing']}")


def check_chat(bench, port, work):
    status, report = run_bench(bench, port, work, "chat",
                               ["--rate", "500", "--duration", "2", "--drain", "2"])
    chat, sessions = report["chat"], report["sessions"]
    if (status != 0 or sessions["online"] != COUNT or chat["sent"] == 0
            or chat["delivered"] != chat["sent"] or chat["lost"] != 0
            or chat["duplicates"] != 0):
        raise AssertionError(f"chat: exit {status}, sessions {sessions}, chat {chat}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", required=True)
    args = parser.parse_args()
    if not os.path.exists(smoke_login.PROSODY):
        print(f"FAIL: {smoke_login.PROSODY} is missing: apt-get install prosody (see deploy/setup)",
              file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="starling-smoke-scenarios-")
    port = smoke_login.free_port()
    provision.provision_prosody(os.path.join(work, "data"), COUNT)
    process = smoke_login.start_prosody(work, port)
    try:
        check_reconnect(args.bench, port, work)
        check_chat(args.bench, port, work)
    except AssertionError:
        print(f"prosody errors:\n{smoke_login.read(os.path.join(work, 'prosody.err'))}",
              file=sys.stderr)
        raise
    finally:
        smoke_login.stop_prosody(process)
    shutil.rmtree(work, ignore_errors=True)
    print("bench_smoke_scenarios: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
