"""bench_smoke_scenarios: starling-bench reconnect and chat against a private Prosody.

Starts Prosody with benchlib.py's helpers (the bench/servers
template, provisioned accounts, a free loopback port, a bounded readiness
wait), then:
  reconnect --count 100: exit 0, 100 online in the first wave and in the
    second (after all connections were aborted at once), 0 failed in both;
  chat --count 100 --rate 500 --duration 2 --drain 2: exit 0, sent > 0,
    delivered == sent, lost 0, duplicates 0.
Stops the Prosody it started (only that process). No timing assertions.
"""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the smoke tests' shared helpers)

COUNT = 100


def run_bench(bench, port, work, scenario, extra):
    result, report = benchlib.run_json(benchlib.bench_command(bench, scenario, port, COUNT,
                                                              extra=extra), work, scenario)
    return result.returncode, report


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
    # Open loop: the pacer ticks at most every 100 us through the 2 s of
    # sending (fewer when a sanitizer build runs slower) and reports its
    # own lateness.
    pacing = chat.get("pacing")
    if (pacing is None or not 1000 <= pacing["ticks"] <= 21000
            or not 0 <= pacing["late_ticks"] <= pacing["ticks"]
            or pacing["late_max_ms"] < 0 or pacing["late_threshold_ms"] != 1):
        raise AssertionError(f"chat: pacing {pacing}")


def main():
    return benchlib.prosody_main("bench_smoke_scenarios", COUNT, (check_reconnect, check_chat))


if __name__ == "__main__":
    sys.exit(main())
