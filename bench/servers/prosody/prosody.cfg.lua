-- Prosody benchmark configuration for bench/compare (Prosody 0.12, Debian
-- bookworm). A template: bench/compare replaces @PORT@ and @WORKDIR@ and
-- writes the result into its own work directory, so nothing under /etc,
-- /var/lib or /var/log is read or written. Every change from the Debian
-- package's /etc/prosody/prosody.cfg.lua is commented; see ../README.md.

-- Run as the invoking user (root on the bench machine) instead of switching
-- to the 'prosody' user, which could not write the private work directory.
run_as_root = true
pidfile = "@WORKDIR@/prosody.pid"
data_path = "@WORKDIR@/data"
plugin_paths = { }

-- Quiet logging: errors only, to a file in the work directory (the package
-- logs info to /var/log/prosody and errors to syslog).
log = { error = "@WORKDIR@/prosody.err" }

-- The epoll backend (0.12's default, made explicit). The package default
-- listen backlog is 128; raised so a burst of connects is not dropped by
-- the kernel and retried a second later (Starling and ejabberd get the same).
-- 16384: Prosody accepts slower than 10,000 logins at once arrive, and a
-- full queue drops them; the kernel caps it at net.core.somaxconn, which
-- bench/compare raises to 16384 for its runs.
network_backend = "epoll"
network_settings = { tcp_backlog = 16384 }

-- Loopback only, one c2s port; no s2s, no HTTP. No direct TLS port by
-- default: tests/bench/smoke_tls.py fills this line with its own port
-- (XEP-0368, TLS from the first byte) when it writes its configuration.
interfaces = { "127.0.0.1" }
c2s_ports = { @PORT@ }
c2s_direct_tls_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }

-- Plaintext c2s on loopback by default: no STARTTLS (mod_tls is disabled
-- below), SASL PLAIN allowed without TLS (the package requires TLS).
-- Certificates are looked up in the work directory (the package points at
-- /etc/prosody/certs): bench/compare leaves it empty; tests/bench/
-- smoke_tls.py puts a throwaway localhost.crt and localhost.key there (and
-- anon.localhost.*) and enables mod_tls and the direct TLS port.
certificates = "@WORKDIR@/certs"
c2s_require_encryption = false
s2s_require_encryption = false
allow_unencrypted_plain_auth = true

-- Unauthenticated streams are closed after c2s_timeout (package default
-- 300 s); raised to one hour like Starling's --handshake-timeout-ms so a
-- long idle hold is not cut.
c2s_timeout = 3600

-- Accounts: the package default (SCRAM-SHA-1 hashes in internal storage).
-- bench/servers/provision.py writes the account files directly.
authentication = "internal_hashed"
storage = "internal"

-- The package's modules, minus:
--   limits   the c2s rate limit (package: 10kb/s per connection), lifted
--   dialback, s2s: no federation on the bench
--   posix    daemonizing/syslog; bench/compare runs prosody -F and tracks the pid
--   invites*, admin_adhoc, admin_shell: administration, not on the measured path
modules_enabled = {
	"disco";
	"roster";
	"saslauth";
	"tls"; -- but disabled below unless a test turns TLS on
	"blocklist";
	"bookmarks";
	"carbons";
	"pep";
	"private";
	"smacks";
	"vcard4";
	"vcard_legacy";
	"csi_simple";
	"ping";
	"register";
	"time";
	"uptime";
	"version";
}
-- mod_tls is disabled for the plaintext bench: without certificates 0.12
-- would still offer STARTTLS and fail every handshake. tests/bench/
-- smoke_tls.py rewrites this exact line without "tls" (with certificates).
modules_disabled = { "s2s", "tls" }

-- In-band registration stays off (package default); users are provisioned.
allow_registration = false

VirtualHost "localhost"

-- SASL ANONYMOUS (RFC 4505) for starling-bench --mechanism ANONYMOUS: no
-- accounts, the server makes up each session's JID.
VirtualHost "anon.localhost"
	authentication = "anonymous"
