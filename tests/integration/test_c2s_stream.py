"""Integration tests: XMPP client streams against a real starling process.

The server's output is parsed with Python's expat bindings (a parser we did
not write), incrementally, exactly as a client would read the stream. Every
socket wait is bounded by a timeout; every load loop by a count.
"""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest
import xml.parsers.expat

from starling_process import Starling

STREAMS_NS = "http://etherx.jabber.org/streams"
STREAM_ERRORS_NS = "urn:ietf:params:xml:ns:xmpp-streams"
HEADER = ("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>")
BINARY = None
CTL = None


class Element:
    def __init__(self, name, attrs):
        self.namespace, _, self.name = name.rpartition(" ")
        self.attrs = attrs
        self.children = []


class ClientStream:
    """One client connection whose server stream is parsed as it arrives."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.stack = []
        self.header = None
        self.elements = []
        self.stream_closed = False
        self.eof = False

    def _start(self, name, attrs):
        element = Element(name, attrs)
        if self.header is None:
            self.header = element
        elif self.stack:
            self.stack[-1].children.append(element)
        if self.header is not element:
            self.stack.append(element)

    def _end(self, name):
        if not self.stack:
            self.stream_closed = True
            return
        element = self.stack.pop()
        if not self.stack:
            self.elements.append(element)

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def pump(self, until, timeout=None):
        """Reads and parses until `until()` holds, EOF, or the timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not until() and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                break
            self.parser.Parse(data, False)
        return until()

    def open(self):
        self.send(HEADER)
        assert self.pump(lambda: bool(self.elements)), "no stream features"
        return self.elements[0]

    def stream_error(self):
        """Waits for a stream error, the stream close and EOF; returns the condition."""
        self.pump(lambda: self.eof)
        errors = [e for e in self.elements if e.namespace == STREAMS_NS and e.name == "error"]
        if not errors:
            return None
        conditions = [c.name for c in errors[0].children if c.namespace == STREAM_ERRORS_NS]
        return conditions[0] if conditions else "(no condition)"

    def close(self):
        self.sock.close()


class StreamTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Starling(BINARY, reactors=2).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def test_zz_server_exits_cleanly(self):
        """Runs last in this class: everything above left the server healthy."""
        stream = self.connect()
        stream.open()
        self.assertIsNone(self.server.proc.poll(), "the server died during the tests")

    def connect(self):
        stream = ClientStream(self.server.port)
        self.addCleanup(stream.close)
        return stream

    def assert_open_stream(self, stream, features):
        self.assertEqual(stream.header.namespace, STREAMS_NS)
        self.assertEqual(stream.header.name, "stream")
        self.assertEqual(stream.header.attrs.get("from"), "localhost")
        self.assertEqual(stream.header.attrs.get("version"), "1.0")
        self.assertGreaterEqual(len(stream.header.attrs.get("id", "")), 16)
        self.assertEqual((features.namespace, features.name), (STREAMS_NS, "features"))

    def test_header_answered_with_header_and_features(self):
        stream = self.connect()
        self.assert_open_stream(stream, stream.open())
        self.assertFalse(stream.pump(lambda: stream.eof, timeout=0.3), "stream closed early")
        stream.send("</stream:stream>")
        stream.pump(lambda: stream.eof)
        self.assertTrue(stream.stream_closed)
        self.assertTrue(stream.eof)
        self.assertEqual(len(stream.elements), 1)

    def test_stream_ids_are_unique(self):
        ids = set()
        for _ in range(20):
            stream = self.connect()
            stream.open()
            ids.add(stream.header.attrs["id"])
        self.assertEqual(len(ids), 20)

    def test_header_byte_by_byte_with_whitespace_keepalives(self):
        stream = self.connect()
        for byte in HEADER.encode():
            stream.send(bytes([byte]))
        self.assertTrue(stream.pump(lambda: bool(stream.elements)))
        self.assert_open_stream(stream, stream.elements[0])
        for _ in range(5):
            stream.send(" \n")
        self.assertFalse(stream.pump(lambda: stream.eof, timeout=0.3))
        stream.send("</stream:stream>")
        stream.pump(lambda: stream.eof)
        self.assertTrue(stream.stream_closed)

    def header_error(self, header):
        stream = self.connect()
        stream.send(header)
        condition = stream.stream_error()
        self.assertIsNotNone(stream.header, "the server must send its own header first")
        self.assertTrue(stream.stream_closed)
        return condition

    def test_header_errors(self):
        cases = {
            "host-unknown": HEADER.replace("to='localhost'", "to='example.org'"),
            "invalid-namespace": HEADER.replace(
                "xmlns:stream='http://etherx.jabber.org/streams'",
                "xmlns:stream='http://example.org/streams'"),
            "unsupported-version": HEADER.replace("version='1.0'", "version='0.9'"),
        }
        cases["host-unknown (no to)"] = HEADER.replace("to='localhost' ", "")
        cases["invalid-namespace (server ns)"] = HEADER.replace("'jabber:client'", "'jabber:server'")
        for expected, header in cases.items():
            with self.subTest(expected):
                self.assertEqual(self.header_error(header), expected.split(" ")[0])

    def test_garbage_before_header_is_not_well_formed(self):
        self.assertEqual(self.header_error("hello there\r\n"), "not-well-formed")

    def test_billion_laughs_is_restricted_xml(self):
        doctype = ("<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
                   + "".join(f"<!ENTITY lol{i} '{('&lol%s;' % (i - 1 or '')) * 10}'>"
                             for i in range(1, 10))
                   + "]>")
        self.assertEqual(self.header_error(doctype + HEADER[len("<?xml version='1.0'?>"):]),
                         "restricted-xml")

    def hostile(self, payload):
        stream = self.connect()
        stream.open()
        stream.send(payload)
        return stream.stream_error()

    def test_hostile_xml_gets_the_named_stream_error(self):
        deep = "<message>" + "<x>" * 100 + "</x>" * 100 + "</message>"
        many_attributes = "<message " + " ".join(f"a{i}='v'" for i in range(100)) + "/>"
        cases = [
            ("restricted-xml", "<!DOCTYPE message>"),
            ("restricted-xml", "<message><!-- comment --></message>"),
            ("restricted-xml", "<?pi data?>"),
            ("restricted-xml", "<message><body>&custom;</body></message>"),
            ("not-well-formed", "<message><body></message>"),
            ("not-well-formed", "<message type='chat' type='normal'/>"),
            ("not-well-formed", "<message type=chat/>"),
            ("not-well-formed", "<message type='<'/>"),
            ("not-well-formed", "<message><body>&#0;</body></message>"),
            ("not-well-formed", b"<message><body>\xc0\x80</body></message>"),
            ("not-well-formed", b"<message><body>\xed\xa0\x80</body></message>"),
            ("not-well-formed", "<message><body>\x01</body></message>"),
            ("invalid-namespace", "<foo:message/>"),
            ("policy-violation", "<message><body>" + "x" * (300 * 1024) + "</body></message>"),
            ("policy-violation", deep),
            ("policy-violation", many_attributes),
        ]
        for expected, payload in cases:
            with self.subTest(expected=expected, payload=str(payload)[:60]):
                self.assertEqual(self.hostile(payload), expected)

    def test_stanza_before_authentication_is_not_authorized(self):
        self.assertEqual(self.hostile("<message to='a@localhost'><body>hi</body></message>"),
                         "not-authorized")

    def test_hostile_streams_do_not_harm_others(self):
        healthy = [self.connect() for _ in range(20)]
        for stream in healthy:
            stream.open()
        hostile = [self.connect() for _ in range(20)]
        for i, stream in enumerate(hostile):
            stream.open()
            stream.send(["<a></b>", "<!-- x -->", "<x:y/>", "&bad;"][i % 4])
        for stream in hostile:
            self.assertIsNotNone(stream.stream_error())
        for stream in healthy:
            self.assertFalse(stream.eof)
            stream.send(" ")
            stream.send("</stream:stream>")
            stream.pump(lambda s=stream: s.eof)
            self.assertTrue(stream.stream_closed)
            self.assertEqual(len(stream.elements), 1, "no stream error on a healthy stream")

    def test_starlingctl_probe(self):
        ok = subprocess.run([CTL, "probe", "--port", str(self.server.port)],
                            capture_output=True, text=True, timeout=30)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertIn("features: <stream:features", ok.stdout)
        wrong = subprocess.run([CTL, "probe", "--port", str(self.server.port),
                                "--domain", "example.org"],
                               capture_output=True, text=True, timeout=30)
        self.assertNotEqual(wrong.returncode, 0)
        self.assertIn("host-unknown", wrong.stdout + wrong.stderr)
        closed_port = subprocess.run([CTL, "probe", "--port", "1", "--timeout-ms", "2000"],
                                     capture_output=True, text=True, timeout=30)
        self.assertNotEqual(closed_port.returncode, 0)
        self.assertIn("cannot connect", closed_port.stderr)

    def test_starlingctl_limits_lists_every_limit(self):
        header = os.path.join(os.path.dirname(__file__), "..", "..", "proto", "limits.h")
        with open(header) as f:
            declared = set(re.findall(r"^#define (LIMIT_[A-Z0-9_]+)\b", f.read(), re.M))
        listed = subprocess.run([CTL, "limits"], capture_output=True, text=True, timeout=30,
                                check=True).stdout
        printed = {line.split()[0] for line in listed.splitlines()}
        self.assertEqual(printed, declared)
        self.assertIn("LIMIT_STANZA_BYTES_MAX             262144", listed)

    def test_many_concurrent_streams(self):
        streams = [self.connect() for _ in range(400)]
        for stream in streams:
            stream.send(HEADER)
        for stream in streams:
            self.assertTrue(stream.pump(lambda s=stream: bool(s.elements)))
            self.assertEqual(stream.elements[0].name, "features")


class TimeoutTests(unittest.TestCase):
    def expect_connection_timeout(self, extra, send_header):
        with Starling(BINARY, reactors=2, extra=extra) as server:
            stream = ClientStream(server.port, timeout=10)
            if send_header:
                stream.open()
            started = time.monotonic()
            self.assertEqual(stream.stream_error(), "connection-timeout")
            self.assertTrue(stream.stream_closed)
            self.assertLess(time.monotonic() - started, 5.0)
            stream.close()

    def test_handshake_timeout_is_connection_timeout(self):
        self.expect_connection_timeout(("--handshake-timeout-ms", "400"), send_header=True)

    def test_silent_connection_gets_header_then_connection_timeout(self):
        self.expect_connection_timeout(("--handshake-timeout-ms", "400"), send_header=False)

    def test_idle_timeout_is_connection_timeout(self):
        self.expect_connection_timeout(
            ("--handshake-timeout-ms", "60000", "--idle-timeout-ms", "400"), send_header=True)


class ShutdownTests(unittest.TestCase):
    def test_sigterm_closes_streams_with_system_shutdown(self):
        with Starling(BINARY, reactors=2, extra=("--grace-ms", "2000")) as server:
            streams = [ClientStream(server.port) for _ in range(10)]
            for stream in streams:
                stream.open()
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            for stream in streams:
                self.assertEqual(stream.stream_error(), "system-shutdown")
                self.assertTrue(stream.stream_closed)
                stream.close()
            status = server.proc.wait(timeout=10)
            self.assertLess(time.monotonic() - started, 2.0 + 1.0)
            server.check_clean_exit(status)


if __name__ == "__main__":
    arguments = argparse.ArgumentParser()
    arguments.add_argument("--starling", required=True)
    arguments.add_argument("--starlingctl", required=True)
    options, rest = arguments.parse_known_args()
    BINARY = options.starling
    CTL = options.starlingctl
    unittest.main(argv=[sys.argv[0], "-v", *rest])
