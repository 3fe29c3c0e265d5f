"""bench_smoke_presence: starling-bench presence against a private Prosody.

Starts Prosody with benchlib.py's helpers, with 100 accounts whose
rosters bench/servers/provision.py writes as a ring of 10 contacts, and runs
`starling-bench presence --count 100 --roster 10 --measured 10`. Asserts
exit 0, all 100 online, the background settled, and counts that match the
ring computed here independently of the tool: the measured users are
k*N/M, none is a contact of another, so each has R online contacts; every
one of them must get the measured user's presence (delivered = M x R, lost
0) and answer its probe (probe answers = M x R), with no duplicates, no
presence from a non-contact and none malformed. Also checks the roster
files themselves (each user lists exactly its ring neighbours, mutually).
Stops the Prosody it started (only that process). No timing assertions.
"""
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the smoke tests' shared helpers)

COUNT = 100
ROSTER = 10
MEASURED = 10
BENCH_TIMEOUT_S = 90


def ring(user, count, roster):
    """User numbers (1-based) in user's roster, from the ring's definition."""
    half = roster // 2
    return {(user - 1 + d) % count + 1 for d in range(-half, half + 1) if d != 0}


def check_roster_files(datadir):
    """Every roster file names exactly the ring neighbours, subscription both."""
    for user in range(1, COUNT + 1):
        with open(os.path.join(datadir, "localhost", "roster", f"user{user}.dat")) as f:
            text = f.read()
        contacts = {int(n) for n in re.findall(r'\["user(\d+)@localhost"\]', text)}
        if contacts != ring(user, COUNT, ROSTER) or text.count('"both"') != ROSTER:
            raise AssertionError(f"user{user}: roster {sorted(contacts)}")
        for contact in contacts:
            if user not in ring(contact, COUNT, ROSTER):
                raise AssertionError(f"user{user} -> user{contact} is not mutual")


def expected_fanout():
    """Measured users k*N/M (0-based); their contacts that are background users."""
    measured = {k * COUNT // MEASURED for k in range(MEASURED)}
    total = 0
    for index in measured:
        contacts = {c - 1 for c in ring(index + 1, COUNT, ROSTER)}
        if contacts & measured:
            raise AssertionError(f"measured {index} has measured contacts")
        total += len(contacts)
    return total


def run_presence(bench, port, work):
    command = benchlib.bench_command(bench, "presence", port, COUNT,
                                     extra=["--roster", str(ROSTER), "--measured",
                                            str(MEASURED), "--rate", "20"])
    result, report = benchlib.run_json(command, work, "presence", BENCH_TIMEOUT_S)
    return result.returncode, report


def check_presence(bench, port, work):
    status, report = run_presence(bench, port, work)
    presence = report["presence"]
    fanout = expected_fanout()
    benchlib.check_all_online("presence", status, report, COUNT)
    expected = {"background_online": True, "background_settled": True,
                "measured_online": MEASURED, "online_contacts": fanout, "delivered": fanout,
                "lost": 0, "probe_answers": fanout, "probe_answers_missing": 0,
                "duplicates": 0, "incomplete_logins": 0, "strangers": 0, "malformed": 0}
    wrong = {key: presence[key] for key, value in expected.items() if presence[key] != value}
    if wrong:
        raise AssertionError(f"presence: expected {expected}, got {wrong} in {presence}")
    # Every presence of the phase is counted: at least the fan-out and the probe answers.
    if presence["presences"] < 2 * fanout or presence["presences_per_second"] is None:
        raise AssertionError(f"presence: phase counts {presence}")
    if presence["time_to_all_contacts_ms"]["max"] is None:
        raise AssertionError(f"presence: no time to all contacts in {presence}")


def main():
    return benchlib.prosody_main("bench_smoke_presence", COUNT, (
        lambda bench, port, work: check_roster_files(os.path.join(work, "data")),
        check_presence), roster=ROSTER)


if __name__ == "__main__":
    sys.exit(main())
