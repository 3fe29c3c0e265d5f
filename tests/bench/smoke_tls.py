"""bench_smoke_tls: starling-bench login over TLS and with SASL ANONYMOUS, against Prosody.

Generates a throwaway self-signed certificate for localhost and
anon.localhost with the openssl CLI into a private work directory (where the
bench/servers Prosody template looks for certificates, so Prosody offers
STARTTLS once the template's mod_tls is enabled), fills the template's direct TLS port line (XEP-0368) with a
second free port, and starts Prosody (benchlib.py's helpers for all of it). Then
`starling-bench login --count 50`:
  --tls starttls, SCRAM-SHA-1:                      exit 0, 50 online, 0 failed;
  --tls direct, PLAIN (on the direct TLS port):     exit 0, 50 online, 0 failed;
  --mechanism ANONYMOUS on anon.localhost, STARTTLS with --tls-ca naming the
    certificate the server has (verification on): exit 0, 50 online, 0 failed;
  --tls starttls --tls-ca of another CA:            exit 1, 50 failed with
    reason tls (CERTIFICATE_VERIFY_FAILED);
  --tls direct against the plaintext port:          exit 1, 50 failed with
    reason tls (the server's bytes are no TLS record).
Prosody 0.12 offers SCRAM-SHA-1 and PLAIN but not SCRAM-SHA-256, so that
is proven against a private ejabberd (bench/servers/ejabberd/run, the
template with `auth_scram_hash: sha256`, the same certificate and STARTTLS
on; accounts by bench/servers/provision.py, registered after the node
started with that hash):
  --mechanism SCRAM-SHA-256, plaintext:             exit 0, 50 online, 0 failed;
  --mechanism SCRAM-SHA-256, --tls starttls --tls-ca: exit 0, 50 online, 0 failed.
Stops each server it started (only that process; SIGTERM, then SIGKILL
after a bound). No timing assertions.
"""
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (the smoke tests' shared helpers)
from benchlib import provision  # noqa: E402

EJABBERD_RUN = os.path.join(benchlib.SERVERS_DIR, "ejabberd", "run")
EJABBERD_TEMPLATE = os.path.join(benchlib.SERVERS_DIR, "ejabberd", "ejabberd.yml")
EJABBERD_INSTALLED = "/usr/sbin/ejabberdctl"
EJABBERD_READY_TIMEOUT_S = 60
COUNT = 50


def run_login(bench, port, work, name, extra):
    command = benchlib.bench_command(bench, "login", port, COUNT, domain=None, users=None,
                                     password=None, extra=extra)
    result, report = benchlib.run_json(command, work, name)
    return result.returncode, report


def check_online(bench, port, work, name, tls, extra):
    status, report = run_login(bench, port, work, name, ["--tls", tls] + extra)
    benchlib.check_all_online(name, status, report, COUNT)
    if report["options"]["tls"] != tls:
        raise AssertionError(f"{name}: the report says tls {report['options']['tls']}")


def check_tls_failure(bench, port, work, name, extra, condition):
    status, report = run_login(bench, port, work, name, extra)
    sessions = report["sessions"]
    conditions = sessions["conditions"].get("tls", {})
    if (status != 1 or sessions["online"] != 0 or sessions["failures"]["tls"] != COUNT
            or (condition is not None and conditions.get(condition) != COUNT)):
        raise AssertionError(f"{name}: exit {status}, sessions {sessions}")


def run_checks(bench, port, direct_port, work, ca, other_ca):
    password = ["--domain", "localhost", "--users", "user%d", "--password", provision.PASSWORD]
    check_online(bench, port, work, "starttls-scram-sha-1", "starttls",
                 password + ["--mechanism", "SCRAM-SHA-1"])
    check_online(bench, direct_port, work, "direct-plain", "direct",
                 password + ["--mechanism", "PLAIN"])
    check_online(bench, port, work, "anonymous", "starttls",
                 ["--domain", "anon.localhost", "--mechanism", "ANONYMOUS", "--tls-ca", ca])
    check_tls_failure(bench, port, work, "other-ca",
                      password + ["--tls", "starttls", "--tls-ca", other_ca],
                      "CERTIFICATE_VERIFY_FAILED")
    check_tls_failure(bench, port, work, "direct-on-plaintext-port",
                      password + ["--tls", "direct"], None)


def write_ejabberd_config(work, port, certificate_pem):
    """The ejabberd template filled in, with SCRAM-SHA-256 hashes, the
    certificate and STARTTLS offered; its path."""
    with open(EJABBERD_TEMPLATE) as f:
        config = f.read().replace("@PORT@", str(port)).replace("@WORKDIR@", work)
    edits = (("auth_password_format: scram\n",
              f"auth_password_format: scram\nauth_scram_hash: sha256\n"
              f"certfiles:\n  - {certificate_pem}\n"),
             ("    starttls: false\n", "    starttls: true\n"))
    for old, new in edits:
        if old not in config:
            raise AssertionError(f"the ejabberd template has no {old!r}")
        config = config.replace(old, new)
    path = os.path.join(work, "ejabberd.yml")
    with open(path, "w") as f:
        f.write(config)
    return path


def start_ejabberd(work, certificate_pem):
    """Starts a private ejabberd node, waits (bounded) until it answers a
    stream header and registers the accounts; (process, port)."""
    os.makedirs(work)
    port, dist_port = benchlib.free_ports(2)
    config = write_ejabberd_config(work, port, certificate_pem)
    log_path = os.path.join(work, "run.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([EJABBERD_RUN, work, config, str(dist_port)], cwd=work,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    benchlib.wait_until("ejabberd", lambda: benchlib.xmpp_ready(port), process,
                        EJABBERD_READY_TIMEOUT_S, log_path, interval_s=0.5)
    try:
        provision.provision_ejabberd(dist_port, COUNT)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        benchlib.stop_process(process)
        raise AssertionError(f"ejabberd provisioning failed: {error}")
    return process, port


def run_ejabberd_checks(bench, work, ca, certificate_pem):
    process, port = start_ejabberd(work, certificate_pem)
    password = ["--domain", "localhost", "--users", "user%d", "--password", provision.PASSWORD,
                "--mechanism", "SCRAM-SHA-256"]
    try:
        check_online(bench, port, work, "ejabberd-scram-sha-256", "none", password)
        check_online(bench, port, work, "ejabberd-starttls-scram-sha-256", "starttls",
                     password + ["--tls-ca", ca])
    except AssertionError:
        print(f"ejabberd log:\n{benchlib.read(os.path.join(work, 'log', 'ejabberd.log'))}",
              file=sys.stderr)
        raise
    finally:
        benchlib.stop_process(process)


def main():
    args = benchlib.parse_args()
    if benchlib.missing((benchlib.PROSODY, "prosody"), (benchlib.OPENSSL, "openssl"),
                        (EJABBERD_INSTALLED, "ejabberd")):
        return 1
    with benchlib.work_dir("starling-smoke-tls-") as work:
        certs = os.path.join(work, "certs")
        os.makedirs(certs)
        ca = benchlib.make_certificate(certs, "localhost", ["localhost", "anon.localhost"])
        shutil.copy(ca, os.path.join(certs, "anon.localhost.crt"))
        shutil.copy(os.path.join(certs, "localhost.key"),
                    os.path.join(certs, "anon.localhost.key"))
        other_ca = benchlib.make_certificate(work, "other-ca", ["other.invalid"])
        certificate_pem = os.path.join(work, "localhost.pem")  # ejabberd: key and chain in one
        with open(certificate_pem, "w") as f:
            f.write(benchlib.read(os.path.join(certs, "localhost.key")) + benchlib.read(ca))
        port, direct_port = benchlib.free_ports(2)
        servers = benchlib.write_prosody_template(work, direct_port)
        provision.provision_prosody(os.path.join(work, "data"), COUNT)
        with benchlib.prosody(work, port, servers):
            run_checks(args.bench, port, direct_port, work, ca, other_ca)
        run_ejabberd_checks(args.bench, os.path.join(work, "ejabberd"), ca, certificate_pem)
    print("bench_smoke_tls: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
