"""pg_cluster: runs a command against a private PostgreSQL cluster.

    pg_cluster.py [--fsync] [--tls | --tls-only] COMMAND [ARGS...]

Creates a temporary directory, initdb's a cluster in it (trust
authentication, no fsync unless --fsync, which benchmarks use so that a
commit costs what it costs in production; with --tls the server also
accepts TLS, with a self-signed certificate made by the openssl CLI; with
--tls-only it accepts nothing else over TCP, and authenticates with
SCRAM-SHA-256 and a password, exported as STARLING_PG_PASSWORD; the
certificate's path is exported as STARLING_PG_CA), starts postgres listening only on
127.0.0.1 at a free port (no Unix socket outside the directory), waits
(bounded) until it accepts connections, runs COMMAND with STARLING_PG_HOST,
STARLING_PG_PORT, STARLING_PG_USER set, plus STARLING_PG_STOP and
STARLING_PG_START (shell commands that stop the cluster with `pg_ctl stop -m
fast` and start it again, for the fault test), then stops the cluster and
removes the directory. Exits with COMMAND's status.

PostgreSQL refuses to run as root: as root the server runs as the
`postgres` user (runuser) and the directory is owned by it. PostgreSQL is
required: without its binaries this fails (install the packages named in
deploy/setup --test) rather than passing without running.
"""
import glob
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True

START_WAIT_SECONDS = 30  # initdb and the first start on a loaded machine
COMMAND_TIMEOUT_SECONDS = 600  # the whole suite under ASan, with margin
START_ATTEMPTS = 3  # a free port may be taken by a parallel test before postgres binds it


def binaries():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise SystemExit("pg_cluster: no /usr/lib/postgresql/*/bin/pg_ctl: "
                         "install postgresql (deploy/setup --test)")
    return os.path.dirname(found[-1])


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main():
    command = sys.argv[1:]
    fsync = "off"
    tls = tls_only = False
    while command[:1] in (["--fsync"], ["--tls"], ["--tls-only"]):
        fsync = "on" if command[0] == "--fsync" else fsync
        tls = tls or command[0] in ("--tls", "--tls-only")
        tls_only = tls_only or command[0] == "--tls-only"
        command = command[1:]
    if not command:
        print("usage: pg_cluster.py [--fsync] [--tls | --tls-only] COMMAND [ARGS...]",
              file=sys.stderr)
        return 2
    bindir = binaries()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    user = "postgres" if as_root else os.environ.get("USER", "postgres")
    work = tempfile.mkdtemp(prefix="starling-pg-")
    data = os.path.join(work, "data")
    if tls:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-keyout", os.path.join(work, "server.key"),
                        "-out", os.path.join(work, "server.crt")],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=START_WAIT_SECONDS)
        os.chmod(os.path.join(work, "server.key"), 0o600)
    if as_root:
        for name in os.listdir(work):
            shutil.chown(os.path.join(work, name), "postgres", "postgres")
        shutil.chown(work, "postgres", "postgres")
    pg_ctl = [os.path.join(bindir, "pg_ctl"), "-D", data, "-l", os.path.join(work, "log"), "-w",
              "-t", str(START_WAIT_SECONDS)]
    stop = prefix + pg_ctl + ["-m", "fast", "stop"]
    try:
        subprocess.run(prefix + [os.path.join(bindir, "initdb"), "-D", data, "-A", "trust",
                                 "-U", user, "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                       check=True, stdout=subprocess.DEVNULL, timeout=START_WAIT_SECONDS * 2)
        password = None
        if tls_only:
            password = os.urandom(12).hex()
            with open(os.path.join(data, "pg_hba.conf"), "w") as hba:
                hba.write("local all all trust\n"
                          "hostssl all all 127.0.0.1/32 scram-sha-256\n"
                          "hostnossl all all 127.0.0.1/32 reject\n")
        for attempt in range(START_ATTEMPTS):
            port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -c port={port} "
                       f"-c unix_socket_directories={work} -c fsync={fsync} "
                       f"-c max_connections=50")
            if tls:
                options += (f" -c ssl=on -c ssl_cert_file={work}/server.crt"
                            f" -c ssl_key_file={work}/server.key")
            start = prefix + pg_ctl + ["-o", options, "start"]
            started = subprocess.run(start, stdout=subprocess.DEVNULL,
                                     timeout=START_WAIT_SECONDS * 2).returncode == 0
            if started:
                break
        if not started:
            with open(os.path.join(work, "log"), errors="replace") as log:
                sys.stderr.write(log.read()[-4000:])
            raise SystemExit("pg_cluster: postgres did not start (its log is above)")
        environment = dict(os.environ, STARLING_PG_HOST="127.0.0.1", STARLING_PG_PORT=str(port),
                           STARLING_PG_USER=user,
                           STARLING_PG_STOP=shlex.join(stop) + " >/dev/null",
                           STARLING_PG_START=shlex.join(start) + " >/dev/null")
        if tls:
            environment["STARLING_PG_CA"] = os.path.join(work, "server.crt")
        if password is not None:
            subprocess.run(prefix + [os.path.join(bindir, "psql"), "-X", "-q", "-h", work, "-p",
                                     str(port), "-U", user, "-d", "postgres", "-c",
                                     f"ALTER ROLE \"{user}\" PASSWORD '{password}'"],
                           check=True, stdout=subprocess.DEVNULL, timeout=START_WAIT_SECONDS)
            environment["STARLING_PG_PASSWORD"] = password
        return subprocess.run(command, env=environment,
                              timeout=COMMAND_TIMEOUT_SECONDS).returncode
    finally:
        subprocess.run(stop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=START_WAIT_SECONDS * 2)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
