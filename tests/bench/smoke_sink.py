"""bench_smoke_sink: starling-bench's scenarios against starling-bench sink.

Starts `starling-bench sink --port 0 --reactors 2` (it names its port on
stdout; the wait for that line is bounded), then runs against it:
  login --count 200 with SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN (the
    mechanisms this branch's login engine has): exit 0, 200 online, 0 failed;
  chat --count 100 --rate 500 --duration 2 --drain 1: exit 0, 100 online,
    sent > 0, delivered == sent, lost 0, duplicates 0;
  login --count 200 with a wrong password: exit 1, 200 auth failures, all
    not-authorized.
A raw socket client then logs in with ANONYMOUS (the login engine of this
branch has no ANONYMOUS, so the sink's side is checked by hand), binds,
pings, sends itself a message with a forged 'from' (it must come back
stamped with its real JID) and one to an offline user (an error comes back).
Nonsense sink options must give one line and exit 2. Then stops the sink
with SIGTERM (exit 0 expected, bounded) and checks that
the sink's own counters (its --json at exit) agree with the generator's:
logins by mechanism, binds, SASL failures, messages forwarded == sent,
nothing undeliverable, every accepted connection closed. Stops only the
process it started. No timing assertions.
"""
import json
import os
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the smoke tests' shared helpers)

READY_TIMEOUT_S = 20
STOP_TIMEOUT_S = 30
COUNT = 200
CHAT_COUNT = 100
PASSWORD = "sink-secret"
RAW_TIMEOUT_S = 10
HEADER = benchlib.STREAM_HEADER.decode()


def sink_port(out_path):
    """The port the sink names on stdout once it listens, None before."""
    for line in benchlib.read(out_path).splitlines():
        if " listening on 127.0.0.1:" in line:
            return int(line.split("127.0.0.1:")[1].split()[0])
    return None


def start_sink(bench, work):
    """Starts the sink; returns (process, port) once it names its port."""
    out_path = os.path.join(work, "sink.out")
    command = [bench, "sink", "--address", "127.0.0.1", "--port", "0", "--reactors", "2",
               "--no-pin", "--password", PASSWORD, "--json", os.path.join(work, "sink.json")]
    with open(out_path, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    port = benchlib.wait_until("sink", lambda: sink_port(out_path), process, READY_TIMEOUT_S,
                               out_path, interval_s=0.05)
    return process, port


def stop_sink(process):
    """SIGTERM, bounded wait, SIGKILL as a last resort; the exit status."""
    return benchlib.stop_process(process, STOP_TIMEOUT_S)


def run_bench(bench, port, work, name, scenario, count, extra):
    command = benchlib.bench_command(bench, scenario, port, count, password=None, extra=extra)
    result, report = benchlib.run_json(command, work, name)
    return result.returncode, report


def check_login(bench, port, work, mechanism):
    status, report = run_bench(bench, port, work, f"login-{mechanism}", "login", COUNT,
                               ["--mechanism", mechanism, "--password", PASSWORD])
    benchlib.check_all_online(f"login {mechanism}", status, report, COUNT)


def check_chat(bench, port, work):
    status, report = run_bench(bench, port, work, "chat", "chat", CHAT_COUNT,
                               ["--password", PASSWORD, "--rate", "500", "--duration", "2",
                                "--drain", "1"])
    chat, sessions = report["chat"], report["sessions"]
    if (status != 0 or sessions["online"] != CHAT_COUNT or chat["sent"] == 0
            or chat["delivered"] != chat["sent"] or chat["lost"] != 0
            or chat["duplicates"] != 0):
        raise AssertionError(f"chat: exit {status}, sessions {sessions}, chat {chat}")
    return chat["sent"]


def check_wrong_password(bench, port, work):
    status, report = run_bench(bench, port, work, "login-wrong", "login", COUNT,
                               ["--password", "not-" + PASSWORD])
    benchlib.check_auth_refused("wrong password", status, report, COUNT)


class RawClient:
    """A bare XMPP client over a socket: sends text, waits (bounded) for text."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=RAW_TIMEOUT_S)
        self.received = ""

    def send(self, text):
        self.sock.sendall(text.encode())

    def wait_for(self, wanted):
        """Returns everything received up to and including wanted."""
        deadline = time.monotonic() + RAW_TIMEOUT_S
        while wanted not in self.received:
            if time.monotonic() > deadline:
                raise AssertionError(f"raw client: no {wanted!r} in {self.received!r}")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"raw client: closed before {wanted!r}: {self.received!r}")
            self.received += chunk.decode()
        at = self.received.index(wanted) + len(wanted)
        seen, self.received = self.received[:at], self.received[at:]
        return seen


def check_raw_protocol(port):
    """ANONYMOUS, bind, ping, a message to itself with a forged from (stamped
    with the real JID), and one to nobody (bounced). Returns the JID."""
    client = RawClient(port)
    client.send(HEADER)
    if "<mechanism>ANONYMOUS</mechanism>" not in client.wait_for("</stream:features>"):
        raise AssertionError("raw: ANONYMOUS not offered")
    client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'>=</auth>")
    client.wait_for("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'></success>")
    client.send(HEADER)
    client.wait_for("</stream:features>")
    client.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                "<resource>raw</resource></bind></iq>")
    bound = client.wait_for("</iq>")
    jid = bound.split("<jid>")[1].split("</jid>")[0]
    if not jid.endswith("@localhost/raw"):
        raise AssertionError(f"raw: bound JID {jid!r}")
    client.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    if "type='result'" not in client.wait_for("id='p1'"):
        raise AssertionError("raw: ping not answered with a result")
    bare = jid.split("/")[0]
    client.send(f"<message to='{bare}' from='forged@localhost' id='m1'><body>hi</body></message>")
    echoed = client.wait_for("</message>")
    if f"from='{jid}'" not in echoed or "forged" in echoed or "<body>hi</body>" not in echoed:
        raise AssertionError(f"raw: message not stamped with {jid}: {echoed!r}")
    client.send("<message to='nobody@localhost' id='m2'><body>lost</body></message>")
    bounced = client.wait_for("</message>")
    if "type='error'" not in bounced or "service-unavailable" not in bounced:
        raise AssertionError(f"raw: no error for an offline recipient: {bounced!r}")
    client.send("</stream:stream>")
    client.wait_for("</stream:stream>")
    client.sock.close()


def check_usage(bench):
    """Nonsense options: one line on stderr and exit 2, before listening."""
    for extra in (["--port", "70000"], ["--domain", "a b"], ["--reactors", "0"], ["--bogus"]):
        result = subprocess.run([bench, "sink"] + extra, capture_output=True, text=True,
                                timeout=benchlib.BENCH_TIMEOUT_S)
        if result.returncode != 2 or len(result.stderr.splitlines()) != 1:
            raise AssertionError(f"sink {extra}: exit {result.returncode}, {result.stderr!r}")


def check_sink_counters(work, sent):
    with open(os.path.join(work, "sink.json")) as f:
        counters = json.load(f)["counters"]
    logins = 3 * COUNT + CHAT_COUNT + 1  # and the raw client's
    expected = {
        "binds": logins,
        "bind_errors": 0,
        "sasl_failures": COUNT,
        "accepted": logins + COUNT,
        "closed": logins + COUNT,
        "streams": logins + COUNT,
        "messages_received": sent + 2,
        "messages_forwarded": sent + 1,
        "messages_undeliverable": 1,
        "pings": 1,
        "messages_mailbox_full": 0,
        "stream_errors": 0,
    }
    wrong = {key: (counters[key], value) for key, value in expected.items()
             if counters[key] != value}
    sasl = counters["sasl_success"]
    wanted_sasl = {"scram_sha_256": COUNT, "scram_sha_1": COUNT + CHAT_COUNT, "plain": COUNT,
                   "anonymous": 1}
    if wrong or sasl != wanted_sasl:
        raise AssertionError(f"sink counters disagree (got, expected): {wrong}; sasl {sasl}")


def main():
    args = benchlib.parse_args()
    try:
        check_usage(args.bench)
    except (AssertionError, subprocess.TimeoutExpired) as error:
        print(f"FAIL: {error}", file=sys.stderr)
        return 1
    with benchlib.work_dir("starling-smoke-sink-") as work:
        process, port = start_sink(args.bench, work)
        try:
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
                check_login(args.bench, port, work, mechanism)
            sent = check_chat(args.bench, port, work)
            check_wrong_password(args.bench, port, work)
            check_raw_protocol(port)
            status = stop_sink(process)
            print(benchlib.read(os.path.join(work, "sink.out")), flush=True)
            if status != 0:
                raise AssertionError(f"sink exited {status} on SIGTERM")
            check_sink_counters(work, sent)
        except (AssertionError, OSError, subprocess.TimeoutExpired) as error:
            stop_sink(process)
            print(f"sink output:\n{benchlib.read(os.path.join(work, 'sink.out'))}",
                  file=sys.stderr)
            print(f"FAIL: {error}", file=sys.stderr)
            raise SystemExit(1)  # leaves the work directory for inspection
        finally:
            stop_sink(process)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
