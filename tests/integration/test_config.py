"""Integration tests: starling's configuration from the outside.

`starling --check-config` on good and bad files (exit status, and the
file:line:column and key path its message must name), environment
variables, and a real start showing the precedence defaults < file <
environment < command line through the port the server actually listens on.
Every wait is bounded.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from starling_process import free_port

BINARY = None
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "starling.example.yaml")


def clean_environment(**extra):
    """The test's environment without any STARLING_* variable, plus extra."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STARLING_")}
    environment.update(extra)
    return environment


def check_config(path, **environment):
    return subprocess.run([BINARY, "--check-config", path], capture_output=True, text=True,
                          timeout=30, env=clean_environment(**environment))


class CheckConfigTests(unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.directory.cleanup()

    def write(self, text, name="starling.yaml"):
        path = os.path.join(self.directory.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def expect_ok(self, path, **environment):
        result = check_config(path, **environment)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, f"{path}: ok\n")

    def expect_refused(self, text, message, **environment):
        path = self.write(text)
        result = check_config(path, **environment)
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn(message.replace("FILE", path), result.stderr)
        self.assertEqual(result.stdout, "")

    def test_example_passes(self):
        self.expect_ok(EXAMPLE)

    def test_minimal_and_empty_files_pass(self):
        self.expect_ok(self.write("domains: [example.org]\n"))
        self.expect_ok(self.write(""))

    def test_refusals_name_file_line_and_key(self):
        self.expect_refused("storage:\n  postgresql:\n    port: abc\n",
                            'FILE:3:11: storage.postgresql.port: wants an integer 1..65535, '
                            'not "abc"')
        self.expect_refused("reactors: 1\nreactorz: 2\n", "FILE:2:1: reactorz: unknown key")
        self.expect_refused("logging:\n  level: [info]\n",
                            "FILE:2:10: logging.level: wants one of debug, info, warning, "
                            "error, not a list")
        self.expect_refused("reactors: 300\n", 'FILE:1:11: reactors: wants an integer 0..256, '
                                               'not "300"')
        self.expect_refused("storage: {driver: mysql}\n",
                            'FILE:1:19: storage.driver: wants one of sqlite, postgresql, '
                            'not "mysql"')
        self.expect_refused("timeouts:\n  idle_ms: 1000\n  idle_ms: 2000\n",
                            "FILE:3:3: timeouts.idle_ms: set twice (first at line 2)")
        self.expect_refused("domains: [a\n", "FILE:2:1: malformed YAML")
        self.expect_refused("storage:\n  postgresql:\n    password_file: /nonexistent/pw\n",
                            'FILE:3:20: storage.postgresql.password_file: cannot read '
                            '"/nonexistent/pw"')
        self.expect_refused("listeners:\n  - {address: 0.0.0.0, port: 5222, tls: plaintext}\n",
                            "FILE:2:5: listeners[0]: tls: plaintext is allowed on loopback")

    def test_unreadable_file(self):
        path = os.path.join(self.directory.name, "missing.yaml")
        result = check_config(path)
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"{path}: cannot read: No such file or directory", result.stderr)

    def test_environment_is_checked_too(self):
        path = self.write("")
        result = check_config(path, STARLING_STORAGE_DRIVR="sqlite")
        self.assertEqual(result.returncode, 1)
        self.assertIn("environment STARLING_STORAGE_DRIVR: no such configuration key",
                      result.stderr)
        result = check_config(path, STARLING_LOGGING_LEVEL="loud")
        self.assertEqual(result.returncode, 1)
        self.assertIn("environment STARLING_LOGGING_LEVEL: logging.level: wants one of",
                      result.stderr)
        self.expect_ok(path, STARLING_LOGGING_LEVEL="debug", STARLING_FUZZ_SECONDS="5")

    def test_password_file(self):
        secret = self.write("s3cret\n", "password")
        self.expect_ok(self.write(f"storage:\n  postgresql:\n    password_file: {secret}\n"))
        self.expect_ok(self.write(""), STARLING_STORAGE_POSTGRESQL_PASSWORD_FILE=secret)

    def test_bad_config_stops_a_start(self):
        path = self.write("reactors: many\n")
        result = subprocess.run([BINARY, "--config", path], capture_output=True, text=True,
                                timeout=30, env=clean_environment())
        self.assertEqual(result.returncode, 2)
        self.assertIn(f"starling: {path}:1:11: reactors: wants an integer", result.stderr)


class PrecedenceTests(unittest.TestCase):
    """The port the server really listens on shows which layer won."""

    def serve(self, arguments, environment):
        """Starts starling, returns the port it reports serving on, stops it."""
        log = tempfile.TemporaryFile()
        process = subprocess.Popen([BINARY, "--reactors", "1", *arguments], stdout=log,
                                   stderr=subprocess.STDOUT, env=clean_environment(**environment))
        try:
            deadline = time.monotonic() + 10
            text = ""
            while time.monotonic() < deadline and "serving" not in text:
                if process.poll() is not None:
                    break
                time.sleep(0.05)
                log.seek(0)
                text = log.read().decode(errors="replace")
            self.assertIn("serving", text, text)
            port = int(text.split("serving", 1)[1].split("\n", 1)[0].rsplit(":", 1)[1]
                       .split()[0])
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return port, text
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            status = process.wait(timeout=20)
            log.seek(0)
            tail = log.read().decode(errors="replace")
            log.close()
            self.assertEqual(status, 0, tail)
            self.assertNotIn("Sanitizer", tail)

    def test_layers(self):
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "starling.yaml")
            file_port, env_port, line_port = free_port(), free_port(), free_port()
            with open(path, "w") as f:
                f.write(f"domains: [example.org]\nlisteners:\n"
                        f"  - {{address: 127.0.0.1, port: {file_port}, tls: plaintext}}\n")
            port, text = self.serve(["--config", path], {})
            self.assertEqual(port, file_port)
            self.assertIn("serving example.org", text)
            port, _ = self.serve(["--config", path],
                                 {"STARLING_LISTENERS_0_PORT": str(env_port)})
            self.assertEqual(port, env_port)
            port, text = self.serve(["--config", path, "--port", str(line_port),
                                     "--domain", "line.example"],
                                    {"STARLING_LISTENERS_0_PORT": str(env_port),
                                     "STARLING_DOMAINS": "env.example"})
            self.assertEqual(port, line_port)
            self.assertIn("serving line.example", text)

    def test_json_log_to_file(self):
        with tempfile.TemporaryDirectory() as directory:
            log_path = os.path.join(directory, "starling.log")
            port = free_port()
            process = subprocess.Popen(
                [BINARY, "--reactors", "1", "--port", str(port)], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=clean_environment(STARLING_LOGGING_FORMAT="json",
                                      STARLING_LOGGING_DESTINATION=log_path))
            try:
                deadline = time.monotonic() + 10
                text = ""
                while time.monotonic() < deadline and "serving" not in text:
                    time.sleep(0.05)
                    if os.path.exists(log_path):
                        with open(log_path) as f:
                            text = f.read()
                self.assertIn("serving", text)
            finally:
                process.send_signal(signal.SIGTERM)
                output, _ = process.communicate(timeout=20)
            self.assertEqual(process.returncode, 0, output)
            self.assertEqual(output, b"")
            with open(log_path) as f:
                lines = f.read().splitlines()
            records = [json.loads(line) for line in lines]
            self.assertEqual({"time", "level", "message"}, set(records[0]))
            self.assertTrue(any(r["message"].startswith("starling") and "serving" in r["message"]
                                for r in records))
            self.assertEqual(records[-1]["message"], "starling stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--starling", required=True)
    options, rest = parser.parse_known_args()
    BINARY = options.starling
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)
