"""bench_smoke_tls: starling-bench login over TLS and with SASL ANONYMOUS, against Prosody.

Generates a throwaway self-signed certificate for localhost and
anon.localhost with the openssl CLI into a private work directory (where the
bench/servers Prosody template looks for certificates, so Prosody offers
STARTTLS once the template's mod_tls is enabled), fills the template's direct TLS port line (XEP-0368) with a
second free port, and starts Prosody with smoke_login.py's helpers. Then
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
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smoke_login  # noqa: E402  (its Prosody helpers)
from smoke_login import provision  # noqa: E402

OPENSSL = "/usr/bin/openssl"
EJABBERD_RUN = os.path.join(smoke_login.SERVERS_DIR, "ejabberd", "run")
EJABBERD_TEMPLATE = os.path.join(smoke_login.SERVERS_DIR, "ejabberd", "ejabberd.yml")
EJABBERD_INSTALLED = "/usr/sbin/ejabberdctl"
EJABBERD_READY_TIMEOUT_S = 60
COUNT = 50
BENCH_TIMEOUT_S = 60
OPENSSL_TIMEOUT_S = 60
PORT_TRIES_MAX = 10
DIRECT_TLS_LINE = "c2s_direct_tls_ports = { }"
TLS_DISABLED_LINE = 'modules_disabled = { "s2s", "tls" }'


def make_certificate(directory, name, subject_names):
    """A self-signed RSA certificate NAME.crt with key NAME.key in directory."""
    command = [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
               "-subj", f"/CN={subject_names[0]}",
               "-addext", "subjectAltName=" + ",".join(f"DNS:{n}" for n in subject_names),
               "-keyout", os.path.join(directory, f"{name}.key"),
               "-out", os.path.join(directory, f"{name}.crt")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_S)
    if result.returncode != 0:
        raise AssertionError(f"openssl req failed: {result.stderr}")
    return os.path.join(directory, f"{name}.crt")


def write_template(work, direct_port):
    """A copy of the Prosody template with mod_tls enabled and the direct TLS
    port filled in; the directory to point smoke_login.SERVERS_DIR at."""
    with open(os.path.join(smoke_login.SERVERS_DIR, "prosody", "prosody.cfg.lua")) as f:
        template = f.read()
    for line in (DIRECT_TLS_LINE, TLS_DISABLED_LINE):
        if line not in template:
            raise AssertionError(f"the Prosody template has no '{line}' line")
    template = template.replace(TLS_DISABLED_LINE, 'modules_disabled = { "s2s" }')
    servers = os.path.join(work, "servers")
    os.makedirs(os.path.join(servers, "prosody"))
    with open(os.path.join(servers, "prosody", "prosody.cfg.lua"), "w") as f:
        f.write(template.replace(DIRECT_TLS_LINE, f"c2s_direct_tls_ports = {{ {direct_port} }}"))
    return servers


def run_login(bench, port, work, name, extra):
    json_path = os.path.join(work, f"{name}.json")
    command = [bench, "login", "--host", "127.0.0.1", "--port", str(port), "--count", str(COUNT),
               "--reactors", "2", "--sources", "2", "--timeout-s", "30", "--json",
               json_path] + extra
    result = subprocess.run(command, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S)
    print(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}", flush=True)
    if not os.path.exists(json_path):
        raise AssertionError(f"{name}: no JSON report (exit {result.returncode})")
    with open(json_path) as f:
        return result.returncode, json.load(f)


def check_online(bench, port, work, name, tls, extra):
    status, report = run_login(bench, port, work, name, ["--tls", tls] + extra)
    sessions = report["sessions"]
    if status != 0 or sessions["online"] != COUNT or sessions["failed"] != 0:
        raise AssertionError(f"{name}: exit {status}, sessions {sessions}")
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
    port, dist_port = smoke_login.free_port(), smoke_login.free_port()
    config = write_ejabberd_config(work, port, certificate_pem)
    log_path = os.path.join(work, "run.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([EJABBERD_RUN, work, config, str(dist_port)], cwd=work,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + EJABBERD_READY_TIMEOUT_S
    while not smoke_login.xmpp_ready(port):
        if process.poll() is not None or time.monotonic() > deadline:
            smoke_login.stop_prosody(process)  # stops exactly this process
            raise AssertionError(f"ejabberd did not answer (exit {process.returncode}):\n"
                                 f"{smoke_login.read(log_path)}")
        time.sleep(0.5)
    try:
        provision.provision_ejabberd(dist_port, COUNT)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        smoke_login.stop_prosody(process)
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
        print(f"ejabberd log:\n{smoke_login.read(os.path.join(work, 'log', 'ejabberd.log'))}",
              file=sys.stderr)
        raise
    finally:
        smoke_login.stop_prosody(process)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", required=True)
    args = parser.parse_args()
    for needed, package in ((smoke_login.PROSODY, "prosody"), (OPENSSL, "openssl"),
                            (EJABBERD_INSTALLED, "ejabberd")):
        if not os.path.exists(needed):
            print(f"FAIL: {needed} is missing: apt-get install {package} (see deploy/setup)",
                  file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="starling-smoke-tls-")
    certs = os.path.join(work, "certs")
    os.makedirs(certs)
    ca = make_certificate(certs, "localhost", ["localhost", "anon.localhost"])
    shutil.copy(ca, os.path.join(certs, "anon.localhost.crt"))
    shutil.copy(os.path.join(certs, "localhost.key"), os.path.join(certs, "anon.localhost.key"))
    other_ca = make_certificate(work, "other-ca", ["other.invalid"])
    certificate_pem = os.path.join(work, "localhost.pem")  # ejabberd: key and chain in one
    with open(certificate_pem, "w") as f:
        f.write(smoke_login.read(os.path.join(certs, "localhost.key")) + smoke_login.read(ca))
    port = smoke_login.free_port()
    direct_port = next((p for p in (smoke_login.free_port() for _ in range(PORT_TRIES_MAX))
                        if p != port), None)
    if direct_port is None:
        raise AssertionError(f"no second free port in {PORT_TRIES_MAX} tries")
    # start_prosody fills the template it finds under SERVERS_DIR.
    smoke_login.SERVERS_DIR = write_template(work, direct_port)
    provision.provision_prosody(os.path.join(work, "data"), COUNT)
    process = smoke_login.start_prosody(work, port)
    try:
        run_checks(args.bench, port, direct_port, work, ca, other_ca)
    except AssertionError:
        print(f"prosody errors:\n{smoke_login.read(os.path.join(work, 'prosody.err'))}",
              file=sys.stderr)
        raise
    finally:
        smoke_login.stop_prosody(process)
    run_ejabberd_checks(args.bench, os.path.join(work, "ejabberd"), ca, certificate_pem)
    shutil.rmtree(work, ignore_errors=True)
    print("bench_smoke_tls: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
