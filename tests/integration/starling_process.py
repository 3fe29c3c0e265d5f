"""Start and stop a real starling process for integration tests.

Each test server gets its own free loopback port, a bounded start-up wait
(the port must accept a connection), and is stopped with SIGTERM; a process
that outlives its grace period is killed and reported as a failure.
"""
import os
import signal
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Starling:
    def __init__(self, binary, reactors=2, extra=()):
        self.port = free_port()
        self.args = [binary, "--reactors", str(reactors), "--port", str(self.port),
                     "--address", "127.0.0.1", *extra]
        self.proc = None
        self.log_path = None
        # The server opens its storage at start: each one gets its own
        # data_dir (SQLite database) unless the caller's environment sets one.
        self.data_dir = tempfile.TemporaryDirectory(prefix="starling-it-data-")

    def __enter__(self):
        self.log_path = f"/tmp/starling-it-{os.getpid()}-{self.port}.log"
        self.log = open(self.log_path, "wb")
        environment = dict(os.environ)
        environment.setdefault("STARLING_DATA_DIR", self.data_dir.name)
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=environment)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"starling exited early: {self.read_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("starling did not accept within 10 s")

    def read_log(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def check_clean_exit(self, status):
        """A stopped server must exit 0 with no sanitizer report in its log."""
        log = self.read_log()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in log:
                raise AssertionError(f"starling log holds '{marker}':\n{log[-4000:]}")
        if status != 0:
            raise AssertionError(f"starling exited with {status}:\n{log[-4000:]}")

    def __exit__(self, *exc):
        try:
            status = self.stop()
            if exc[0] is None:
                self.check_clean_exit(status)
        finally:
            self.log.close()
            self.data_dir.cleanup()
