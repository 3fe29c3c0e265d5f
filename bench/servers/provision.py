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

Rosters (roster=R > 0, R even and below N): user I's contacts are a ring,
the R/2 users after it and the R/2 before it among the N (wrapping around),
every item subscription "both", no name, no groups: exactly the rosters
`starling-bench presence` assumes (see bench/src/bench_presence.c).

prosody:  <datadir>/localhost/roster/userI.dat, the keyval table
          rostermanager stores ([false] = {version, pending} and one entry
          per contact JID).
ejabberd: one remote evaluation that writes the #roster{} records of every
          user into mod_roster's Mnesia table (the default backend): bulk
          into its dets file and dets index when the layout is the one
          ejabberd creates, else with mnesia:dirty_write (see
          provision_ejabberd_rosters), clears mod_roster's caches, and reads
          rosters back through Mnesia's index and mod_roster:get_roster.

Both share one salt across all users: the server stores per-user hashes but
never runs PBKDF2 at SCRAM login, so a shared salt costs it nothing, while
per-user salts would cost ~5 ms of PBKDF2 per user here. Plain-text storage
was avoided: Prosody converts a plaintext password to hashes (PBKDF2) at the
first login, and ejabberd with plain storage would hash at every SCRAM login,
both of which would bill provisioning to the login scenario.

usage: provision.py prosody DATADIR N [ROSTER]
       provision.py ejabberd DIST_PORT N [ROSTER]
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


def ring_contacts(index, count, roster):
    """The contacts of user number index (0-based among count): index+1..index+R/2
    and index-1..index-R/2, modulo count (also 0-based)."""
    half = roster // 2
    return ([(index + d) % count for d in range(1, half + 1)]
            + [(index - d) % count for d in range(1, half + 1)])


def check_roster(count, roster):
    if roster and (roster % 2 or roster >= count):
        raise ValueError(f"roster {roster} must be even and below the user count {count}")


def prosody_roster_file(contacts):
    items = "".join(f"\t[{_lua_string(jid)}] = {{\n\t\t[\"groups\"] = {{}};\n"
                    "\t\t[\"subscription\"] = \"both\";\n\t};\n" for jid in contacts)
    return ("return {\n"
            "\t[false] = {\n\t\t[\"pending\"] = {};\n\t\t[\"version\"] = 1;\n\t};\n"
            + items + "};\n")


def provision_prosody_rosters(datadir, count, roster, first=1):
    rosters = os.path.join(datadir, DOMAIN, "roster")
    os.makedirs(rosters, exist_ok=True)
    for i in range(count):
        contacts = [f"user{first + c}@{DOMAIN}" for c in ring_contacts(i, count, roster)]
        with open(os.path.join(rosters, f"user{first + i}.dat"), "w") as f:
            f.write(prosody_roster_file(contacts))


def provision_prosody(datadir, count, first=1, roster=0):
    """Writes count account files (and roster files when roster > 0); returns
    seconds taken."""
    check_roster(count, roster)
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
    if roster:
        provision_prosody_rosters(datadir, count, roster, first)
    return time.monotonic() - t0


def ejabberd_eval(dist_port, expr, timeout=600):
    proc = subprocess.run([os.path.join(HERE, "ejabberd", "eval"), str(dist_port), expr],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"ejabberd eval failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def provision_ejabberd_rosters(dist_port, count, roster, first=1):
    """Writes the ring rosters into ejabberd's Mnesia roster table in one
    evaluation and clears mod_roster's caches so no session sees a stale
    empty roster; returns the path taken ("dets" or "mnesia").

    ejabberd creates the table disc_only_copies (a dets file) with a dets
    bag index on #roster.us. Through Mnesia (mnesia:dirty_write per
    #roster{}, see mod_roster.hrl) dets takes about 120 us per item, 25-45 s
    for 200,000. When Mnesia reports exactly that layout (index_info), the
    records and their index entries ({us, usj}) go to the two dets tables in
    one bulk dets:insert each instead (about 5 s for 200,000); anything else
    takes the dirty_write path. Either way the result is read back through
    Mnesia's index (dirty_index_read) and mod_roster:get_roster."""
    # The records are built in one comprehension and written by native funs:
    # erl_eval interprets the expression, and an interpreted call per item
    # costs more than the write.
    expr = f"""
        H = <<"{DOMAIN}">>, First = {first}, N = {count}, Half = {roster // 2},
        Names = list_to_tuple([<<"user", (integer_to_binary(First + I))/binary>>
                               || I <- lists:seq(0, N - 1)]),
        Items = [{{roster, {{element(I + 1, Names), H, {{element(C + 1, Names), H, <<>>}}}},
                   {{element(I + 1, Names), H}}, {{element(C + 1, Names), H, <<>>}},
                   <<>>, both, none, [], <<>>, []}}
                 || I <- lists:seq(0, N - 1), D <- lists:seq(1, Half),
                    C <- [(I + D) rem N, (I - D + N) rem N]],
        Path = case {{mnesia:table_info(roster, storage_type),
                      mnesia:table_info(roster, index_info)}} of
            {{disc_only_copies, {{index, set, [{{{{3, bag}}, {{dets, Index}}}}]}}}} ->
                ok = dets:insert(roster, Items),
                ok = dets:insert(Index, [{{element(3, R), element(2, R)}} || R <- Items]),
                dets;
            _ ->
                ok = lists:foreach(fun mnesia:dirty_write/1, Items),
                mnesia
        end,
        [catch ets_cache:clear(Cache) || Cache <- [roster_cache, roster_version_cache]],
        Last = element(N, Names),
        {{Path, length(Items), length(mnesia:dirty_index_read(roster, {{Last, H}}, 3)),
          length(mod_roster:get_roster(element(1, Names), H))}}"""
    out = ejabberd_eval(dist_port, expr)
    path = out.strip("{}").split(",")[0]
    if path not in ("dets", "mnesia") or out != f"{{{path},{count * roster},{roster},{roster}}}":
        raise RuntimeError(f"ejabberd roster provisioning check failed: {out}")
    return path


def provision_ejabberd(dist_port, count, first=1, roster=0):
    """Registers count users on the running node (and their rosters when
    roster > 0); returns seconds taken."""
    check_roster(count, roster)
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
    if roster:
        provision_ejabberd_rosters(dist_port, count, roster, first)
        elapsed = time.monotonic() - t0
    return elapsed


def main(argv):
    if len(argv) not in (4, 5) or argv[1] not in ("prosody", "ejabberd"):
        print("usage: provision.py prosody DATADIR N [ROSTER] | "
              "provision.py ejabberd DIST_PORT N [ROSTER]", file=sys.stderr)
        return 2
    try:
        count = int(argv[3])
        roster = int(argv[4]) if len(argv) == 5 else 0
        check_roster(count, roster)
    except ValueError as error:
        print(f"provision.py: {error}", file=sys.stderr)
        return 2
    if argv[1] == "prosody":
        elapsed = provision_prosody(argv[2], count, roster=roster)
    else:
        elapsed = provision_ejabberd(int(argv[2]), count, roster=roster)
    rosters = f" with rosters of {roster}" if roster else ""
    print(f"{argv[1]}: {count} users{rosters} in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
