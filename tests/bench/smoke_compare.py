"""bench_smoke_compare: bench/compare end to end at a small count.

Runs bench/compare against Prosody and Starling with 20 sessions and every
scenario (idle, login, chat, reconnect, presence with rosters of 10; held
3 s, chat for 1 s), and asserts:
exit status 0; a row per server and scenario; Prosody's five rows without
error, with 20 online and 0 failed, the login row with a bytes-per-session
figure and the kernel's socket count equal to the sessions online during the
hold, the chat row with delivered == sent > 0 and 0 lost, the presence row
with every measured presence delivered (delivered > 0, 0 lost, a time to
all contacts); Starling's idle, login, chat and reconnect rows the same
(20 online, 0 failed; login with bytes per session and the socket check
equal; chat delivered == sent > 0, 0 lost), its presence row skipped; every
login row of both servers with mechanism SCRAM-SHA-1 over plaintext, as the
generator reports it; no
server process of the run left behind; net.core.somaxconn untouched (the
test passes --keep-somaxconn). Also that nonsense command lines
(--chat-half without --chat-rate max, an unknown --tls or --perf server
among them) exit 2. A second run, Prosody and Starling at 20 with
--tls starttls, login and chat with --chat-rate max --chat-half (and
--perf starling when perf is installed): exit 0; every row SCRAM-SHA-1
over starttls with openssl s_client's check saying TLSv1.3; a chat@50%
row per server whose open-loop rate is half the closed loop's delivered
rate (within one message/s) with delivered == sent and 0 lost; Starling's
perf data file written. It uses bench/compare's fixed ports (Prosody 15222, Starling
30222), so it fails if another compare runs at the same time. No timing
assertions.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the smoke tests' shared helpers)

COMPARE = os.path.join(benchlib.REPO, "bench", "compare")
COUNT = 20
ROSTER = 10  # bench/compare's default (20) must be below every --count
COMPARE_TIMEOUT_S = 400


def check_usage():
    for bad in (["--scenarios", "nonsense"], ["--count", "7", "--scenarios", "chat"],
                ["--chat-rate", "fast"], ["--servers", "openfire"], ["--count", "x"],
                ["--count", "20", "--scenarios", "presence", "--roster", "3"],
                ["--count", "20", "--scenarios", "presence", "--roster", "20"],
                ["--chat-half"], ["--tls", "direct"], ["--perf", "openfire"]):
        result = subprocess.run([sys.executable, COMPARE] + bad, capture_output=True, text=True, timeout=30)
        lines = result.stderr.strip().splitlines()
        if result.returncode != 2 or len(lines) != 1:
            raise AssertionError(f"{bad}: exit {result.returncode}, stderr {result.stderr!r}")


def row_of(rows, server, scenario):
    found = [r for r in rows if r["server"] == server and r["scenario"] == scenario]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} rows for {server} {scenario}")
    return found[0]


def check_server_rows(rows, server, scenarios):
    for scenario in scenarios:
        row = row_of(rows, server, scenario)
        if row.get("error") or row.get("online") != COUNT or row.get("failed") != 0:
            raise AssertionError(f"{server} {scenario}: {row}")
        if scenario != "idle" and (row.get("mechanism"), row.get("tls")) != ("SCRAM-SHA-1", "none"):
            raise AssertionError(f"{server} {scenario}: logged in with {row.get('mechanism')} over "
                                 f"{row.get('tls')}")
    login = row_of(rows, server, "login")
    if login.get("bytes_per_session") is None or not login["checks"].get("ss_matches"):
        raise AssertionError(f"{server} login checks: {login.get('checks')}")
    chat = row_of(rows, server, "chat")
    if not chat["sent"] > 0 or chat["delivered"] != chat["sent"] or chat["lost"] != 0:
        raise AssertionError(f"{server} chat: sent {chat['sent']}, delivered {chat['delivered']}")


def check_rows(rows):
    check_server_rows(rows, "prosody", ("idle", "login", "chat", "reconnect", "presence"))
    presence = row_of(rows, "prosody", "presence")
    if (not presence["delivered"] > 0 or presence["lost"] != 0 or presence["p50_ms"] is None
            or not presence["settled"]):
        raise AssertionError(f"prosody presence: {presence}")
    check_server_rows(rows, "starling", ("idle", "login", "chat", "reconnect"))
    if not row_of(rows, "starling", "presence").get("skipped"):
        raise AssertionError("starling presence not skipped")


def check_tls_rows(rows, perf):
    for server in ("prosody", "starling"):
        for scenario in ("login", "chat", "chat@50%"):
            row = row_of(rows, server, scenario)
            if row.get("error") or row.get("online") != COUNT or row.get("failed") != 0:
                raise AssertionError(f"tls {server} {scenario}: {row}")
            if (row.get("mechanism"), row.get("tls")) != ("SCRAM-SHA-1", "starttls"):
                raise AssertionError(f"tls {server} {scenario}: {row.get('mechanism')} over {row.get('tls')}")
            if not (row["checks"].get("tls_version") or "").startswith("TLSv1.3"):
                raise AssertionError(f"tls {server} {scenario}: version {row['checks'].get('tls_version')}")
        closed, half = row_of(rows, server, "chat"), row_of(rows, server, "chat@50%")
        if closed.get("mode") != "closed" or half.get("mode") != "open":
            raise AssertionError(f"tls {server}: chat modes {closed.get('mode')}, {half.get('mode')}")
        asked = int(half["command"].split("--rate ")[1].split()[0])
        if abs(asked - closed["msgs_per_s"] / 2) > 1:
            raise AssertionError(f"tls {server}: half-load rate {asked} for {closed['msgs_per_s']} msgs/s")
        if not half["sent"] > 0 or half["delivered"] != half["sent"] or half["lost"] != 0:
            raise AssertionError(f"tls {server} chat@50%: sent {half['sent']}, delivered {half['delivered']}")
    if perf:
        path = row_of(rows, "starling", "chat").get("perf_data")
        if not path or not os.path.getsize(path) > 0:
            raise AssertionError(f"no perf data for starling chat: {path}")


def server_pids(out):
    """Live processes whose command line names the run's directory (its servers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if out.encode() in f.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def read_somaxconn():
    with open("/proc/sys/net/core/somaxconn") as f:
        return int(f.read())


def main():
    args = benchlib.parse_args("--build")
    check_usage()
    out = tempfile.mkdtemp(prefix="starling-smoke-compare-")
    somaxconn_before = read_somaxconn()
    command = [sys.executable, COMPARE, "--servers", "prosody,starling", "--count", str(COUNT),
               "--hold", "3", "--chat-duration", "1", "--chat-rate", "100", "--roster",
               str(ROSTER), "--no-install", "--keep-somaxconn", "--build", args.build, "--out", out]
    result = benchlib.run_printed(command, COMPARE_TIMEOUT_S)
    try:
        if result.returncode != 0:
            raise AssertionError(f"bench/compare exited {result.returncode}")
        with open(os.path.join(out, "results.json")) as f:
            check_rows(json.load(f)["rows"])
        perf = shutil.which("perf") is not None
        tls_out = os.path.join(out, "tls")
        command = [sys.executable, COMPARE, "--servers", "prosody,starling", "--count", str(COUNT),
                   "--scenarios", "login,chat", "--hold", "3", "--chat-duration", "1", "--chat-rate", "max",
                   "--chat-half", "--tls", "starttls", "--no-install", "--keep-somaxconn",
                   "--build", args.build, "--out", tls_out] + (["--perf", "starling"] if perf else [])
        result = benchlib.run_printed(command, COMPARE_TIMEOUT_S)
        if result.returncode != 0:
            raise AssertionError(f"bench/compare --tls starttls exited {result.returncode}")
        with open(os.path.join(tls_out, "results.json")) as f:
            check_tls_rows(json.load(f)["rows"], perf)
        if read_somaxconn() != somaxconn_before:
            raise AssertionError(f"net.core.somaxconn changed from {somaxconn_before} to {read_somaxconn()}")
        left = server_pids(out)
        if left:
            raise AssertionError(f"processes of the run still alive: {left}")
    except AssertionError as e:
        print(f"FAIL: {e} (results in {out})", file=sys.stderr)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
