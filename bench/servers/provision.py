#!/usr/bin/python3
"""Bulk account provisioning for the side-by-side benchmark (bench/compare).

Creates users user1..userN with password "password" on domain localhost.

prosody:  writes Prosody 0.12 internal-storage account files directly,
          <datadir>/localhost/accounts/userI.dat, with the SCRAM-SHA-1
          fields mod_auth_internal_hashed stores (stored_key, server_key,
          salt, iteration_count = its default 10000). The server may be
          stopped or running (internal storage reads the file at login).
ejabberd: on the running node (bench/servers/ejabberd/run), one remote
          evaluation: ejabberd_auth:try_register for user1 (ejabberd's own
          SCRAM code, 4096 iterations), then its Mnesia passwd record is
          copied for user2..userN with dirty writes, and reg_users_counter is
          raised to match.

Both share one salt across all users: the server stores per-user hashes but
never runs PBKDF2 at SCRAM login, so a shared salt costs it nothing, while
per-user salts would cost ~5 ms of PBKDF2 per user here. Plain-text storage
was avoided: Prosody converts a plaintext password to hashes (PBKDF2) at the
first login, and ejabberd with plain storage would hash at every SCRAM login,
both of which would bill provisioning to the login scenario.

usage: provision.py prosody DATADIR N
       provision.py ejabberd DIST_PORT N
"""
import base64
import hashlib
import hmac
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PASSWORD = "password"
DOMAIN = "localhost"


def _lua_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def prosody_account_file(stored_key, server_key, salt, iterations):
    return ("return {\n"
            f"\t[\"iteration_count\"] = {iterations};\n"
            f"\t[\"salt\"] = {_lua_string(salt)};\n"
            f"\t[\"server_key\"] = {_lua_string(server_key)};\n"
            f"\t[\"stored_key\"] = {_lua_string(stored_key)};\n"
            "};\n")


def provision_prosody(datadir, count, first=1):
    """Writes count account files; returns seconds taken."""
    t0 = time.monotonic()
    iterations = 10000  # mod_auth_internal_hashed default_iteration_count
    salt = "starling-bench-shared-salt"
    salted = hashlib.pbkdf2_hmac("sha1", PASSWORD.encode(), salt.encode(), iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha1).digest()
    stored_key = hashlib.sha1(client_key).hexdigest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha1).hexdigest()
    body = prosody_account_file(stored_key, server_key, salt, iterations).encode()
    # datamanager encodes the host with %XX for anything but [%w_-]; "localhost" is unchanged.
    accounts = os.path.join(datadir, DOMAIN, "accounts")
    os.makedirs(accounts, exist_ok=True)
    for i in range(first, first + count):
        with open(os.path.join(accounts, f"user{i}.dat"), "wb") as f:
            f.write(body)
    return time.monotonic() - t0


def ejabberd_eval(dist_port, expr, timeout=600):
    proc = subprocess.run([os.path.join(HERE, "ejabberd", "eval"), str(dist_port), expr],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"ejabberd eval failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def provision_ejabberd(dist_port, count, first=1):
    """Registers count users on the running node; returns seconds taken."""
    t0 = time.monotonic()
    host = f'<<"{DOMAIN}">>'
    expr = f"""
        H = {host}, P = <<"{PASSWORD}">>, First = {first}, Last = {first + count - 1},
        Name = fun(I) -> <<"user", (integer_to_binary(I))/binary>> end,
        ok = case ejabberd_auth:try_register(Name(First), H, P) of
                 ok -> ok; {{error, exists}} -> ok end,
        [R] = mnesia:dirty_read(passwd, {{Name(First), H}}),
        Added = lists:foldl(fun(I, N) ->
                    case mnesia:dirty_read(passwd, {{Name(I), H}}) of
                        [] -> ok = mnesia:dirty_write(setelement(2, R, {{Name(I), H}})), N + 1;
                        _ -> N
                    end
                end, 0, lists:seq(First + 1, Last)),
        mnesia:dirty_update_counter(reg_users_counter, H, Added),
        {{ejabberd_auth:count_users(H),
          ejabberd_auth:check_password(Name(Last), <<>>, H, P),
          ejabberd_auth:check_password(Name(Last), <<>>, H, <<"wrong">>)}}"""
    out = ejabberd_eval(dist_port, expr)
    elapsed = time.monotonic() - t0
    parts = out.strip("{}").split(",")
    if len(parts) != 3 or parts[1] != "true" or parts[2] != "false" or int(parts[0]) < count:
        raise RuntimeError(f"ejabberd provisioning check failed: {out}")
    return elapsed


def main(argv):
    if len(argv) != 4 or argv[1] not in ("prosody", "ejabberd"):
        print("usage: provision.py prosody DATADIR N | provision.py ejabberd DIST_PORT N",
              file=sys.stderr)
        return 2
    count = int(argv[3])
    if argv[1] == "prosody":
        elapsed = provision_prosody(argv[2], count)
    else:
        elapsed = provision_ejabberd(int(argv[2]), count)
    print(f"{argv[1]}: {count} users in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
