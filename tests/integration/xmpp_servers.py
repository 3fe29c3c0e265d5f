"""The XMPP servers the real-client integration tests (test_xmpp_core.py) run against.

One interface, two implementations, so that every case runs unchanged
against either:

- StarlingServer: `starling --config FILE` with a YAML configuration written
  into a private temporary directory: `domains: [localhost]`, three c2s
  listeners on free loopback ports (starttls, direct, plaintext), storage
  from a backend (SQLite in the data_dir, or a fresh database in the
  private PostgreSQL cluster that tests/storage/pg_cluster.py runs the test
  under). Accounts are made with `starlingctl user add JID PASSWORD -c
  FILE`. Starling generates its own self-signed certificate for localhost at
  first start, `<data_dir>/certs/localhost.pem`, which the clients verify
  against as their only CA.
- ProsodyServer: Debian's Prosody 0.12 (`prosody -F`) with a configuration
  of our own in a private temporary directory, used to validate the tests
  themselves: STARTTLS required (c2s_require_encryption), a direct TLS port,
  a throwaway EC P-256 certificate for localhost made with the openssl CLI
  (the file the clients verify against), accounts stored in plain text
  (mod_auth_internal_plain, so that Prosody offers SCRAM-SHA-1,
  SCRAM-SHA-256 and PLAIN for the same account; Prosody's hashed store keeps
  one hash only). Prosody has no plaintext-only listener: plaintext_port is
  None and the cases that need one say so.

Every server is started on free loopback ports, waited for with a bound
(the starttls port must accept TCP), and stopped with SIGTERM then SIGKILL
after a bound; only the process the helper started is signalled. The
temporary directory is removed at stop. Environment variables named
STARLING_* are stripped from every child's environment (starling refuses
unknown ones); PostgreSQL settings go into the YAML file instead.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from starling_process import free_port

DOMAIN = "localhost"
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 20
COMMAND_TIMEOUT_S = 60
PROSODY = "/usr/bin/prosody"
OPENSSL = "/usr/bin/openssl"


def clean_environment(**extra):
    """os.environ without STARLING_* (starling refuses variables it does not
    know), plus extra."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STARLING_")}
    environment.update(extra)
    return environment


def free_ports(count):
    """count distinct free loopback ports."""
    ports = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def wait_for_port(process, port, what, log_path, timeout_s=START_TIMEOUT_S):
    """Returns once 127.0.0.1:port accepts TCP; raises if process exits first
    or timeout_s passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode} before it "
                                 f"listened:\n{read(log_path)[-4000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not accept on {port} within {timeout_s} s:\n"
                                 f"{read(log_path)[-4000:]}")
        time.sleep(0.05)


def stop_process(process, timeout_s=STOP_TIMEOUT_S):
    """SIGTERM to exactly this process, a bounded wait, SIGKILL as a last
    resort; its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)
    return process.returncode


# ---------------------------------------------------------------- storage backends

class SqliteStorage:
    """SQLite in the server's data_dir (the default driver)."""

    name = "sqlite"

    def __init__(self, directory):
        pass

    def storage_yaml(self):
        return "storage:\n  driver: sqlite\n"

    def drop(self):
        pass


class PostgresStorage:
    """A fresh database in the private cluster tests/storage/pg_cluster.py runs
    the suite under (STARLING_PG_HOST/PORT/USER, and under --tls-only
    STARLING_PG_PASSWORD and STARLING_PG_CA); dropped at stop."""

    name = "postgresql"
    created = 0

    def __init__(self, directory):
        try:
            self.host = os.environ["STARLING_PG_HOST"]
            self.port = os.environ["STARLING_PG_PORT"]
            self.user = os.environ["STARLING_PG_USER"]
        except KeyError as missing:
            raise AssertionError(f"no PostgreSQL cluster: {missing} is not set "
                                 "(run under tests/storage/pg_cluster.py)") from None
        self.password = os.environ.get("STARLING_PG_PASSWORD")
        self.ca = os.environ.get("STARLING_PG_CA")
        PostgresStorage.created += 1
        self.database = f"xmpp_{os.getpid()}_{PostgresStorage.created}"
        self.psql(f"CREATE DATABASE {self.database}")

    def environment(self):
        if self.password is None:
            return clean_environment()
        return clean_environment(PGPASSWORD=self.password, PGSSLMODE="require")

    def psql(self, sql):
        result = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h",
                                 self.host, "-p", self.port, "-U", self.user, "-d", "postgres",
                                 "-c", sql], capture_output=True, text=True,
                                timeout=COMMAND_TIMEOUT_S, env=self.environment())
        if result.returncode != 0:
            raise AssertionError(f"psql {sql!r}: {result.stderr}")

    def storage_yaml(self):
        text = (f"storage:\n  driver: postgresql\n  postgresql:\n    host: {self.host}\n"
                f"    port: {self.port}\n    user: {self.user}\n    dbname: {self.database}\n")
        if self.password is not None:
            text += (f"    password: {self.password}\n    sslmode: verify-ca\n"
                     f"    sslrootcert: {self.ca}\n")
        return text

    def drop(self):
        self.psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


STORAGES = {"sqlite": SqliteStorage, "postgresql": PostgresStorage}


# ---------------------------------------------------------------- servers

class StarlingServer:
    """starling --config FILE on three free loopback ports (starttls, direct,
    plaintext); see the module docstring. Use as a context manager."""

    name = "starling"

    def __init__(self, starling, starlingctl, storage="sqlite", reactors=2):
        self.starling, self.starlingctl = starling, starlingctl
        self.directory = tempfile.mkdtemp(prefix="starling-xmpp-it-")
        self.data_dir = os.path.join(self.directory, "data")
        self.starttls_port, self.direct_port, self.plaintext_port = free_ports(3)
        self.process = None
        self.log_path = os.path.join(self.directory, "starling.log")
        self.ca_file = os.path.join(self.data_dir, "certs", f"{DOMAIN}.pem")
        try:
            self.storage = STORAGES[storage](self.directory)
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.config = os.path.join(self.directory, "starling.yaml")
        with open(self.config, "w") as f:
            f.write(f"data_dir: {self.data_dir}\nreactors: {reactors}\n"
                    f"domains: [{DOMAIN}]\nlisteners:\n"
                    f"  - address: 127.0.0.1\n    port: {self.starttls_port}\n    tls: starttls\n"
                    f"  - address: 127.0.0.1\n    port: {self.direct_port}\n    tls: direct\n"
                    f"  - address: 127.0.0.1\n    port: {self.plaintext_port}\n"
                    f"    tls: plaintext\n" + self.storage.storage_yaml())

    def add_user(self, localpart, password):
        result = subprocess.run([self.starlingctl, "user", "add", f"{localpart}@{DOMAIN}",
                                 password, "-c", self.config], capture_output=True, text=True,
                                timeout=COMMAND_TIMEOUT_S, env=clean_environment())
        if result.returncode != 0:
            raise AssertionError(f"starlingctl user add {localpart}: exit {result.returncode}: "
                                 f"{result.stderr}")

    def start(self):
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen([self.starling, "--config", self.config],
                                        stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=clean_environment(),
                                        cwd=self.directory)
        wait_for_port(self.process, self.starttls_port, "starling", self.log_path)
        if not os.path.exists(self.ca_file):
            raise AssertionError(f"starling listens but has no {self.ca_file}")

    def read_log(self):
        return read(self.log_path)

    def stop(self):
        """Stops the server; raises if it did not exit 0 or its log holds a
        sanitizer report (after cleaning up either way)."""
        problem = None
        try:
            if self.process is not None:
                status = stop_process(self.process)
                log = self.read_log()
                for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                               "runtime error:"):
                    if marker in log:
                        problem = f"starling log holds '{marker}':\n{log[-4000:]}"
                if problem is None and status != 0:
                    problem = f"starling exited with {status}:\n{log[-4000:]}"
                self.log.close()
        finally:
            try:
                self.storage.drop()
            finally:
                shutil.rmtree(self.directory, ignore_errors=True)
        if problem:
            raise AssertionError(problem)


PROSODY_CONFIG = """-- Written by tests/integration/xmpp_servers.py: a private Prosody that
-- validates the XMPP core integration tests (see that file).
run_as_root = true
pidfile = "{work}/prosody.pid"
data_path = "{work}/data"
plugin_paths = {{ }}
log = {{ error = "{work}/prosody.err"; info = "{work}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {starttls_port} }}
c2s_direct_tls_ports = {{ {direct_port} }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
certificates = "{work}/certs"
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
authentication = "internal_plain"
storage = "internal"
modules_enabled = {{ "disco"; "roster"; "saslauth"; "tls"; "ping"; }}
-- mod_offline is loaded automatically; off, as Starling has no offline storage yet.
modules_disabled = {{ "s2s"; "offline" }}
allow_registration = false
VirtualHost "{domain}"
"""


class ProsodyServer:
    """Debian's Prosody 0.12 in a private directory (see the module docstring);
    the same interface as StarlingServer, plaintext_port None."""

    name = "prosody"

    def __init__(self, storage=None):
        if not os.path.exists(PROSODY):
            raise AssertionError(f"{PROSODY} is missing: apt-get install prosody")
        self.directory = tempfile.mkdtemp(prefix="prosody-xmpp-it-")
        self.starttls_port, self.direct_port = free_ports(2)
        self.plaintext_port = None
        self.process = None
        self.log_path = os.path.join(self.directory, "prosody.stdout.log")
        certs = os.path.join(self.directory, "certs")
        os.makedirs(certs)
        os.makedirs(os.path.join(self.directory, "data"))
        self.ca_file = os.path.join(certs, f"{DOMAIN}.crt")
        result = subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                 "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                                 "-subj", f"/CN={DOMAIN}", "-addext",
                                 f"subjectAltName=DNS:{DOMAIN}",
                                 "-keyout", os.path.join(certs, f"{DOMAIN}.key"),
                                 "-out", self.ca_file], capture_output=True, text=True,
                                timeout=COMMAND_TIMEOUT_S)
        if result.returncode != 0:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise AssertionError(f"openssl req: {result.stderr}")
        self.config = os.path.join(self.directory, "prosody.cfg.lua")
        with open(self.config, "w") as f:
            f.write(PROSODY_CONFIG.format(work=self.directory, domain=DOMAIN,
                                          starttls_port=self.starttls_port,
                                          direct_port=self.direct_port))

    def add_user(self, localpart, password):
        """Writes the account file mod_auth_internal_plain reads at each login."""
        accounts = os.path.join(self.directory, "data", DOMAIN, "accounts")
        os.makedirs(accounts, exist_ok=True)
        quoted = password.replace("\\", "\\\\").replace('"', '\\"')
        with open(os.path.join(accounts, f"{localpart}.dat"), "w") as f:
            f.write(f'return {{\n\t["password"] = "{quoted}";\n}};\n')

    def start(self):
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen([PROSODY, "-F", "--config", self.config],
                                        cwd=self.directory, stdout=self.log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=clean_environment())
        wait_for_port(self.process, self.starttls_port, "prosody", self.log_path)

    def read_log(self):
        return read(os.path.join(self.directory, "prosody.log")) + read(self.log_path)

    def stop(self):
        try:
            if self.process is not None:
                stop_process(self.process)
                self.log.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
