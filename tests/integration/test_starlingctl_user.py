"""Integration tests: `starlingctl user ...` end to end on a real database.

Every case runs against a backend fixture: a driver plus the configuration
that points starlingctl at a fresh database, and a way to read the stored
credentials back. Two backends: SQLite in a temporary data_dir (read with
Python's sqlite3 module), and PostgreSQL: a fresh database per case in the
private cluster that tests/storage/pg_cluster.py runs this script under
(STARLING_PG_HOST, STARLING_PG_PORT, STARLING_PG_USER; read with psql).
`--backend sqlite|postgresql` picks the TestCase classes to run; the
PostgreSQL ones refuse to run without the cluster's variables rather than
pass without a database.

Stored credentials are checked with SCRAM's own definitions (RFC 5802):
SaltedPassword = PBKDF2-HMAC(password, salt, iterations), StoredKey =
H(HMAC(SaltedPassword, "Client Key")), ServerKey = HMAC(SaltedPassword,
"Server Key"), for SHA-1, SHA-256 and SHA-512. Every subprocess is bounded
by a timeout.
"""
import argparse
import hashlib
import hmac
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

from starling_process import free_port

CTL = None
STARLING = None
TIMEOUT_S = 120

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_BAD_JID, EXIT_UNKNOWN_DOMAIN = 0, 1, 2, 3, 4
EXIT_EXISTS, EXIT_NO_SUCH_USER, EXIT_UNAVAILABLE, EXIT_SCHEMA = 5, 6, 7, 8

HASHES = {"SHA-1": hashlib.sha1, "SHA-256": hashlib.sha256, "SHA-512": hashlib.sha512}


def clean_environment(**extra):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STARLING_")}
    environment.update(extra)
    return environment


class SqliteBackend:
    """SQLite in a fresh data_dir; credentials read from the file."""

    name = "sqlite"

    def __init__(self, directory):
        self.directory = directory
        self.data_dir = os.path.join(directory, "data")
        self.database = os.path.join(self.data_dir, "accounts.db")

    def storage_yaml(self):
        return f"data_dir: {self.data_dir}\nstorage:\n  sqlite:\n    path: accounts.db\n"

    def credentials(self, domain, localpart):
        """{hash name: (salt, iterations, stored_key, server_key)}."""
        with sqlite3.connect(self.database) as db:
            rows = db.execute(
                "SELECT c.hash, c.salt, c.iterations, c.stored_key, c.server_key "
                "FROM credentials c JOIN users u ON u.id = c.user_id "
                "WHERE u.domain = ? AND u.localpart = ?", (domain, localpart)).fetchall()
        return {row[0]: (bytes(row[1]), row[2], bytes(row[3]), bytes(row[4])) for row in rows}

    def stored_anywhere(self, needle):
        """Whether needle's bytes are anywhere in the database file."""
        with open(self.database, "rb") as f:
            return needle in f.read()

    def user_count(self):
        with sqlite3.connect(self.database) as db:
            return db.execute("SELECT COUNT(*) FROM users").fetchone()[0]

    def make_schema_newer(self):
        with sqlite3.connect(self.database) as db:
            db.execute("INSERT INTO schema_version (version, applied_at_us) VALUES (9999, 0)")


class PostgresBackend:
    """A fresh database in the private cluster; credentials read with psql."""

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
        # Under pg_cluster.py --tls-only: TLS and a SCRAM password, or nothing.
        self.password = os.environ.get("STARLING_PG_PASSWORD")
        self.ca = os.environ.get("STARLING_PG_CA")
        PostgresBackend.created += 1
        self.database = f"ctl_{os.getpid()}_{PostgresBackend.created}"
        self.psql("postgres", f"CREATE DATABASE {self.database}")

    def psql(self, database, sql):
        result = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                                 "-p", self.port, "-U", self.user, "-d", database, "-c", sql],
                                capture_output=True, text=True, timeout=TIMEOUT_S,
                                env=self.environment())
        if result.returncode != 0:
            raise AssertionError(f"psql {sql!r}: {result.stderr}")
        return result.stdout.splitlines()

    def environment(self):
        if self.password is None:
            return clean_environment()
        return clean_environment(PGPASSWORD=self.password, PGSSLMODE="require")

    def storage_yaml(self, sslmode="verify-ca"):
        text = (f"storage:\n  driver: postgresql\n  postgresql:\n    host: {self.host}\n"
                f"    port: {self.port}\n    user: {self.user}\n    dbname: {self.database}\n")
        if self.password is not None:
            # verify-ca against the cluster's self-signed certificate: the
            # TLS is checked, and sslrootcert reaches libpq.
            text += (f"    password: {self.password}\n    sslmode: {sslmode}\n"
                     f"    sslrootcert: {self.ca}\n    pool_connections: 2\n")
        return text

    def credentials(self, domain, localpart):
        rows = self.psql(self.database,
                         "SELECT c.hash, encode(c.salt, 'hex'), c.iterations, "
                         "encode(c.stored_key, 'hex'), encode(c.server_key, 'hex') "
                         "FROM credentials c JOIN users u ON u.id = c.user_id "
                         f"WHERE u.domain = '{domain}' AND u.localpart = '{localpart}'")
        stored = {}
        for row in rows:
            name, salt, iterations, stored_key, server_key = row.split("|")
            stored[name] = (bytes.fromhex(salt), int(iterations), bytes.fromhex(stored_key),
                            bytes.fromhex(server_key))
        return stored

    def stored_anywhere(self, needle):
        """Whether needle is anywhere in a dump of the database's data, as text
        or as the hex that bytea columns dump as."""
        dump = subprocess.run(["pg_dump", "--data-only", "-h", self.host, "-p", self.port,
                               "-U", self.user, "-d", self.database],
                              capture_output=True, timeout=TIMEOUT_S, env=self.environment())
        if dump.returncode != 0 or b"COPY public.credentials" not in dump.stdout:
            raise AssertionError(f"pg_dump: {dump.stderr!r}")
        return needle in dump.stdout or needle.hex().encode() in dump.stdout

    def user_count(self):
        return int(self.psql(self.database, "SELECT COUNT(*) FROM users")[0])

    def make_schema_newer(self):
        self.psql(self.database,
                  "INSERT INTO schema_version (version, applied_at_us) VALUES (9999, 0)")


class UserCommandCases:
    """The cases; a subclass sets BACKEND."""

    BACKEND = None

    def setUp(self):
        self.directory = tempfile.TemporaryDirectory(prefix="starlingctl-user-")
        self.backend = self.BACKEND(self.directory.name)
        self.config = self.write("starling.yaml", self.backend.storage_yaml() +
                                 "domains: [localhost, example.org]\n")

    def tearDown(self):
        self.directory.cleanup()

    def write(self, name, text):
        path = os.path.join(self.directory.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def ctl(self, *arguments, config=None, stdin=None, environment=None):
        command = [CTL, "user", *arguments, "-c", config or self.config]
        return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                              input=stdin, env=environment or clean_environment())

    def expect(self, result, status):
        self.assertEqual(result.returncode, status, f"stdout={result.stdout!r} "
                                                    f"stderr={result.stderr!r}")

    def expect_one_line_error(self, result, status, text):
        self.expect(result, status)
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith("starlingctl: "), lines[0])
        self.assertIn(text, lines[0])

    def assert_password(self, domain, localpart, password, hashes=tuple(HASHES)):
        stored = self.backend.credentials(domain, localpart)
        self.assertEqual(set(stored), set(hashes))
        salts = set()
        for name, (salt, iterations, stored_key, server_key) in stored.items():
            digest = HASHES[name]
            self.assertEqual(iterations, 4096)
            self.assertEqual(len(salt), 16)
            salts.add(salt)
            salted = hashlib.pbkdf2_hmac(digest().name, password.encode(), salt, iterations)
            client_key = hmac.new(salted, b"Client Key", digest).digest()
            self.assertEqual(stored_key, digest(client_key).digest(), name)
            self.assertEqual(server_key, hmac.new(salted, b"Server Key", digest).digest(), name)
        self.assertEqual(len(salts), len(hashes), "each hash gets its own salt")

    def listed(self, *arguments):
        result = self.ctl("list", *arguments)
        self.expect(result, EXIT_OK)
        return result.stdout.splitlines()

    # ------------------------------------------------------------ cases

    def test_add_passwd_delete(self):
        self.expect(self.ctl("add", "alice@localhost", "correct horse"), EXIT_OK)
        self.assert_password("localhost", "alice", "correct horse")
        self.assertFalse(self.backend.stored_anywhere(b"correct horse"),
                         "the password itself is stored")
        self.expect_one_line_error(self.ctl("add", "alice@localhost", "other"), EXIT_EXISTS,
                                   "exists")
        self.assert_password("localhost", "alice", "correct horse")
        self.expect(self.ctl("passwd", "alice@localhost", "battery staple"), EXIT_OK)
        self.assert_password("localhost", "alice", "battery staple")
        self.expect_one_line_error(self.ctl("passwd", "bob@localhost", "x"), EXIT_NO_SUCH_USER,
                                   "no such user")
        self.expect(self.ctl("delete", "alice@localhost"), EXIT_OK)
        self.assertEqual(self.backend.credentials("localhost", "alice"), {})
        self.expect_one_line_error(self.ctl("delete", "alice@localhost"), EXIT_NO_SUCH_USER,
                                   "no such user")

    def test_jid_is_checked_and_normalised(self):
        for bad in ["alice", "@localhost", "alice@", "alice@localhost/phone", "al ice@localhost",
                    "al<ice@localhost", "a'b@localhost", "alice@local..host",
                    "x" * 1024 + "@localhost"]:
            with self.subTest(jid=bad):
                self.expect_one_line_error(self.ctl("add", bad, "pw"), EXIT_BAD_JID, "bad JID")
        self.expect_one_line_error(self.ctl("add", "alice@elsewhere.net", "pw"),
                                   EXIT_UNKNOWN_DOMAIN, "not a domain this configuration serves")
        self.expect_one_line_error(self.ctl("add", "alice@localhost", ""), EXIT_BAD_JID,
                                   "password is empty")
        self.assertEqual(self.backend.user_count(), 0)
        self.expect(self.ctl("add", "Alice@LocalHost", "pw"), EXIT_OK)
        self.assertEqual(self.listed(), ["alice@localhost"])

    def test_list_pages_through_every_user(self):
        users = [f"user{i:05d}@localhost" for i in range(2500)]
        others = ["carol@example.org", "dave@example.org"]
        self.write("users.txt", "".join(f"{jid} pw-{jid}\n" for jid in users + others))
        result = self.ctl("import", os.path.join(self.directory.name, "users.txt"))
        self.expect(result, EXIT_OK)
        self.assertIn("2502 created, 0 skipped as existing, 0 errors", result.stdout)
        self.assertEqual(self.listed("localhost"), users)
        self.assertEqual(self.listed("example.org"), others)
        self.assertEqual(sorted(self.listed()), sorted(users + others))
        self.assert_password("localhost", "user01234", "pw-user01234@localhost")
        self.expect_one_line_error(self.ctl("list", "elsewhere.net"), EXIT_UNKNOWN_DOMAIN,
                                   "not a domain")

    def test_import_checks_every_line_first(self):
        text = ("# load-test users\n\n"
                "alice@localhost  secret one\n"
                "   # indented comment\n"
                "bob@localhost\n"
                "carol@elsewhere.net pw\n"
                "dave@localhost pw\n")
        path = self.write("users.txt", text)
        result = self.ctl("import", path)
        self.expect(result, EXIT_BAD_JID)
        self.assertIn(f"{path}:5: want 'JID PASSWORD'", result.stderr)
        self.assertIn(f"{path}:6: 'elsewhere.net' is not a domain", result.stderr)
        self.assertIn("2 bad lines", result.stderr)
        self.assertEqual(self.backend.user_count(), 0, "a bad file writes nothing")

        good = text.replace("bob@localhost\n", "bob@localhost pw2\n").replace(
            "carol@elsewhere.net", "carol@example.org")
        result = self.ctl("import", "-", stdin=good)
        self.expect(result, EXIT_OK)
        self.assertIn("stdin: 4 created, 0 skipped as existing, 0 errors", result.stdout)
        self.assert_password("localhost", "alice", "secret one")
        self.assert_password("localhost", "bob", "pw2")

        again = self.ctl("import", "-", stdin=good + "erin@localhost pw\n")
        self.expect(again, EXIT_EXISTS)
        self.assertIn("stdin:3: the user exists already", again.stderr)
        self.assertIn("1 created, 0 skipped as existing, 4 errors", again.stdout)
        skip = self.ctl("import", "--skip-existing", "-", stdin=good + "erin@localhost pw\n")
        self.expect(skip, EXIT_OK)
        self.assertIn("0 created, 5 skipped as existing, 0 errors", skip.stdout)
        self.assertEqual(self.backend.user_count(), 5)

    def test_import_with_fewer_hashes(self):
        result = self.ctl("import", "--hashes", "SHA-256", "-", stdin="alice@localhost pw\n")
        self.expect(result, EXIT_OK)
        self.assert_password("localhost", "alice", "pw", hashes=("SHA-256",))
        result = self.ctl("import", "--hashes", "sha-512,sha-1", "-", stdin="bob@localhost pw\n")
        self.expect(result, EXIT_OK)
        self.assert_password("localhost", "bob", "pw", hashes=("SHA-512", "SHA-1"))
        for bad in ["md5", "sha-256,sha-256", "", "sha-256,"]:
            with self.subTest(hashes=bad):
                self.expect_one_line_error(self.ctl("import", "--hashes", bad, "-", stdin=""),
                                           EXIT_USAGE, "--hashes")
        self.expect_one_line_error(self.ctl("add", "--hashes", "sha-1", "c@localhost", "pw"),
                                   EXIT_USAGE, "bad arguments")

    def test_bad_arguments(self):
        for arguments in [("add", "alice@localhost"), ("delete",), ("frobnicate",),
                          ("list", "a", "b"), ("add", "--skip-existing", "a@localhost", "pw")]:
            with self.subTest(arguments=arguments):
                self.expect_one_line_error(self.ctl(*arguments), EXIT_USAGE, "bad arguments")
        missing = self.ctl("list", config=os.path.join(self.directory.name, "missing.yaml"))
        self.expect(missing, EXIT_USAGE)
        self.assertEqual(len(missing.stderr.splitlines()), 1, missing.stderr)

    def test_newer_schema_is_refused(self):
        self.expect(self.ctl("add", "alice@localhost", "pw"), EXIT_OK)
        self.backend.make_schema_newer()
        result = self.ctl("list")
        self.expect_one_line_error(result, EXIT_SCHEMA, "9999")
        port = free_port()
        server = subprocess.run([STARLING, "--config", self.config, "--port", str(port),
                                 "--reactors", "1"], capture_output=True, text=True,
                                timeout=TIMEOUT_S, env=clean_environment())
        self.assertEqual(server.returncode, 2, server.stderr)
        self.assertIn("9999", server.stderr)


class SqliteUserTests(UserCommandCases, unittest.TestCase):
    BACKEND = SqliteBackend

    def test_default_configuration_is_starlings(self):
        """Without -c: built-in defaults plus STARLING_*, as starling reads them."""
        data_dir = os.path.join(self.directory.name, "default-data")
        environment = clean_environment(STARLING_DATA_DIR=data_dir)
        result = subprocess.run([CTL, "user", "add", "alice@localhost", "pw"],
                                capture_output=True, text=True, timeout=TIMEOUT_S,
                                env=environment)
        self.expect(result, EXIT_OK)
        self.assertTrue(os.path.exists(os.path.join(data_dir, "starling.db")))
        bad_domain = subprocess.run([CTL, "user", "add", "alice@example.org", "pw"],
                                    capture_output=True, text=True, timeout=TIMEOUT_S,
                                    env=environment)
        self.expect(bad_domain, EXIT_UNKNOWN_DOMAIN)

    def test_server_start_migrates_the_database(self):
        port = free_port()
        log_path = os.path.join(self.directory.name, "server.log")
        with open(log_path, "wb") as log:
            process = subprocess.Popen([STARLING, "--config", self.config, "--port", str(port),
                                        "--reactors", "1"], stdout=log, stderr=subprocess.STDOUT,
                                       env=clean_environment())
            try:
                deadline = time.monotonic() + 10
                while not os.path.exists(self.backend.database) and time.monotonic() < deadline:
                    time.sleep(0.05)
                self.assertIsNone(process.poll())
            finally:
                process.terminate()
                process.wait(timeout=30)
        with sqlite3.connect(self.backend.database) as db:
            self.assertGreaterEqual(db.execute("SELECT MAX(version) FROM schema_version")
                                    .fetchone()[0], 1)
        self.expect(self.ctl("add", "alice@localhost", "pw"), EXIT_OK)

    def test_unreachable_database(self):
        blocker = self.write("not-a-directory", "")
        config = self.write("blocked.yaml", f"data_dir: {blocker}/data\n")
        self.expect_one_line_error(self.ctl("list", config=config), EXIT_UNAVAILABLE,
                                   "cannot create the database directory")
        server = subprocess.run([STARLING, "--config", config, "--port", str(free_port()),
                                 "--reactors", "1"], capture_output=True, text=True,
                                timeout=TIMEOUT_S, env=clean_environment())
        self.assertEqual(server.returncode, 2, server.stderr)
        self.assertIn("cannot create the database directory", server.stderr)

    def test_postgresql_on_a_closed_port(self):
        """An unreachable database: one line, exit 7, within the timeout."""
        config = self.write("pg.yaml", "storage:\n  driver: postgresql\n  postgresql:\n"
                            f"    host: 127.0.0.1\n    port: {free_port()}\n")
        result = self.ctl("list", config=config)
        self.assertEqual(result.returncode, EXIT_UNAVAILABLE, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("storage (postgresql)", result.stderr)


class PostgresUserTests(UserCommandCases, unittest.TestCase):
    BACKEND = PostgresBackend

    def test_plaintext_is_refused_by_a_tls_only_database(self):
        """The cluster takes TLS only: every other case got through it, so
        starlingctl spoke TLS (and SCRAM) to it; without TLS it is refused."""
        self.assertIsNotNone(self.backend.password, "run under pg_cluster.py --tls-only")
        config = self.write("plain.yaml", self.backend.storage_yaml(sslmode="disable"))
        result = self.ctl("list", config=config)
        self.assertEqual(result.returncode, EXIT_UNAVAILABLE, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("no encryption", result.stderr)

    def test_server_connects_with_tls(self):
        """starling itself (BoringSSL for XMPP, libpq's OpenSSL for the
        database, one process) holds TLS connections to the database."""
        self.assertIsNotNone(self.backend.password, "run under pg_cluster.py --tls-only")
        log_path = os.path.join(self.directory.name, "server.log")
        with open(log_path, "wb") as log:
            process = subprocess.Popen([STARLING, "--config", self.config, "--port",
                                        str(free_port()), "--reactors", "1"], stdout=log,
                                       stderr=subprocess.STDOUT, env=clean_environment())
            try:
                query = ("SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_ssl s "
                         "JOIN pg_stat_activity a USING (pid) WHERE a.application_name = "
                         f"'starling' AND a.datname = '{self.backend.database}'")
                deadline = time.monotonic() + 20
                seen = ["0|0"]
                while seen == ["0|0"] and time.monotonic() < deadline:
                    time.sleep(0.1)
                    self.assertIsNone(process.poll(), open(log_path).read())
                    seen = self.backend.psql("postgres", query)
                total, encrypted = map(int, seen[0].split("|"))
                self.assertGreater(total, 0, "starling never connected")
                self.assertEqual(encrypted, total)
                self.assertIsNone(process.poll())
            finally:
                process.terminate()
                self.assertEqual(process.wait(timeout=30), 0, open(log_path).read())


BACKEND_TESTS = {"sqlite": SqliteUserTests, "postgresql": PostgresUserTests}

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--starlingctl", required=True)
    parser.add_argument("--starling", required=True)
    parser.add_argument("--backend", choices=sorted(BACKEND_TESTS), default="sqlite")
    args, rest = parser.parse_known_args()
    CTL, STARLING = args.starlingctl, args.starling
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(BACKEND_TESTS[args.backend])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
