"""bench_bad_servers: starling-bench against servers that misbehave.

Each case runs `starling-bench login --count 20 --timeout-s 3` against a
loopback listener written here (Python sockets, one thread) and asserts
that the tool exits 1 within a bound (never a hang), says so in one line
on stderr ("goal missed: ... failed with REASON"), with every session failed
for the reason the case provokes, as named in the JSON report:
  refused   nothing listens:                  connect / connection-refused
  closes    reads the header, then closes:     closed
  silent    accepts, never answers:            timeout / features
  stream    answers a header, then <stream:error><host-unknown/>:
                                                stream_error / host-unknown
  garbage   answers with bytes that are not XML: bad_xml
and that nonsense command lines exit 2 with exactly one line on stderr.
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the smoke tests' shared helpers)

COUNT = 20
LOGIN_TIMEOUT_S = 3
RUN_BOUND_S = 30  # a run that takes longer than this is a hang
HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' id='x' from='localhost' "
          b"version='1.0'>")


class Listener:
    """A loopback listener that treats every connection with behave(conn)."""

    def __init__(self, behave):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(256)
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.behave = behave
        self.held = []
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping:
            try:
                conn, _ = self.socket.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(2)
            try:
                self.behave(conn, self.held)
            except OSError:
                conn.close()

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        for conn in self.held:
            conn.close()
        self.socket.close()


def read_header(conn):
    data = b""
    while b">" not in data.split(b"?>", 1)[-1]:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk


def closes(conn, held):
    read_header(conn)
    conn.close()


def silent(conn, held):
    held.append(conn)


def stream_error(conn, held):
    read_header(conn)
    conn.sendall(HEADER + b"<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                 b"</stream:error></stream:stream>")
    held.append(conn)


def garbage(conn, held):
    read_header(conn)
    conn.sendall(b"<<this is not xml>>")
    held.append(conn)


def run_login(bench, port, work, name):
    command = [bench, "login", "--port", str(port), "--count", str(COUNT), "--timeout-s",
               str(LOGIN_TIMEOUT_S), "--no-progress"]
    result, report = benchlib.run_json(command, work, name, RUN_BOUND_S)
    return result.returncode, report, result.stderr


def check(bench, work, name, behave, reason, condition):
    if behave is None:
        port = benchlib.free_port()  # bound, never listened: nothing accepts on it
        listener = None
    else:
        listener = Listener(behave)
        port = listener.port
    try:
        status, report, stderr = run_login(bench, port, work, name)
    finally:
        if listener:
            listener.stop()
    sessions = report["sessions"]
    if status != 1 or sessions["online"] != 0 or sessions["failed"] != COUNT:
        raise AssertionError(f"{name}: exit {status}, sessions {sessions}")
    if sessions["failures"][reason] != COUNT:
        raise AssertionError(f"{name}: wanted {COUNT} failures '{reason}', got {sessions}")
    wanted = f"goal missed: 0 of {COUNT} sessions online; {COUNT} failed with {reason}"
    if wanted not in stderr or len(stderr.strip().splitlines()) != 1:
        raise AssertionError(f"{name}: wanted one stderr line with '{wanted}', got {stderr!r}")
    if condition is not None:
        seen = sessions["conditions"].get(reason, {})
        if seen.get(condition) != COUNT:
            raise AssertionError(f"{name}: wanted condition {condition} x{COUNT}, got {seen}")
    print(f"ok {name}: {COUNT} x {reason}" + (f" / {condition}" if condition else ""))


def check_usage(bench):
    for arguments in (["login", "--count", "many"], ["login", "--frobnicate"],
                      ["chat", "--mechanism", "ANONYMOUS"], ["nonsense"],
                      ["login", "--tls", "sometimes"]):
        result = subprocess.run([bench] + arguments, capture_output=True, text=True,
                                timeout=RUN_BOUND_S)
        lines = result.stderr.strip().splitlines()
        if result.returncode != 2 or len(lines) != 1:
            raise AssertionError(f"{arguments}: exit {result.returncode}, stderr {lines}")
        print(f"ok usage {' '.join(arguments)}: {lines[0]}")


def main():
    args = benchlib.parse_args()
    with tempfile.TemporaryDirectory(prefix="starling-bad-servers-") as work:
        check(args.bench, work, "refused", None, "connect", "connection-refused")
        check(args.bench, work, "closes", closes, "closed", None)
        check(args.bench, work, "silent", silent, "timeout", "features")
        check(args.bench, work, "stream", stream_error, "stream_error", "host-unknown")
        check(args.bench, work, "garbage", garbage, "bad_xml", None)
    check_usage(args.bench)
    print("bench_bad_servers: all cases passed")


if __name__ == "__main__":
    sys.exit(main())
