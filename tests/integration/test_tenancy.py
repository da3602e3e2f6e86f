"""Tenants that cannot see each other: identification, users, policies and limits through the
real daemon, driven by real curl. Store changes are made over the control socket while the
daemon serves and take effect on the next request."""

from __future__ import annotations

import socket
import threading

from arcus.auth.secrets import hash_secret
from arcus.testing.wait import wait_until
from tests.integration.conftest import raw_exchange, run_curl

# hashing is deliberately slow: hash each test password once per session
_HASHES: dict[str, str] = {}


def secret(password: str) -> str:
    if password not in _HASHES:
        _HASHES[password] = hash_secret(password)
    return _HASHES[password]


def add_tenant(d, name: str, *sources: str, **settings) -> None:
    d.ctl("tenant.add", {"name": name, "sources": list(sources)})
    if settings:
        d.ctl("tenant.set", {"name": name, **settings})


def add_user(d, tenant: str, name: str, password: str) -> None:
    d.ctl("user.add", {"tenant": tenant, "name": name, "secret": secret(password)})


def get(curl, d, url: str, *extra: str):
    return run_curl(curl, "-i", "-x", f"http://{d.proxy}", *extra, url)


def tenant_conns(d, tenant: str) -> int:
    return d.ctl("stats")["tenants"].get(tenant, {}).get("conns_active", 0)


def status(r) -> int:
    return int(r.stdout.split(b" ", 2)[1]) if r.stdout.startswith(b"HTTP/") else 0


# ---------------------------------------------------------------------------------- users


def test_auth_required_challenges_then_admits_and_never_forwards_credentials(curl, daemon, origin):
    add_tenant(daemon, "acme", "127.0.0.0/8", auth="required", realm="Acme proxy")
    add_user(daemon, "acme", "alice", "wonderland")
    r = get(curl, daemon, origin.url("/headers"))
    assert status(r) == 407
    assert b'Proxy-Authenticate: Basic realm="Acme proxy"' in r.stdout
    r = get(curl, daemon, origin.url("/headers"), "-U", "alice:wrong")
    assert status(r) == 407
    r = get(curl, daemon, origin.url("/headers"), "-U", "alice:wonderland")
    assert status(r) == 200, r.stdout[:300]
    assert b"roxy-Authorization" not in r.stdout  # the origin echoes what it received
    stats = daemon.ctl("stats")
    assert stats["tenants"]["acme"]["requests"] == 3
    # the credentials are cached: many requests, one key derivation; all answered
    for _ in range(5):
        assert status(get(curl, daemon, origin.url("/small"), "-U", "alice:wonderland")) == 200


def test_blocked_user_and_failed_login_throttle(curl, daemon, origin):
    add_tenant(daemon, "acme", "127.0.0.0/8", auth="required")
    add_user(daemon, "acme", "bob", "builder")
    daemon.ctl("user.block", {"tenant": "acme", "name": "bob"})
    r = get(curl, daemon, origin.url("/small"), "-U", "bob:builder")
    assert status(r) == 403 and b"X-Arcus-Error: user_blocked" in r.stdout
    daemon.ctl("user.unblock", {"tenant": "acme", "name": "bob"})
    assert status(get(curl, daemon, origin.url("/small"), "-U", "bob:builder")) == 200
    codes = [status(get(curl, daemon, origin.url("/small"), "-U", "bob:nope")) for _ in range(7)]
    assert codes[:5] == [407] * 5
    assert codes[-1] == 429  # throttled per client address after repeated failures


def test_exempt_sources_and_optional_auth(curl, daemon, origin):
    add_tenant(daemon, "acme", "127.0.0.0/8", auth="required", auth_exempt=["127.0.0.1/32"])
    assert status(get(curl, daemon, origin.url("/small"))) == 200
    daemon.ctl("tenant.set", {"name": "acme", "auth": "optional", "auth_exempt": []})
    add_user(daemon, "acme", "carol", "pw-carol")
    assert status(get(curl, daemon, origin.url("/small"))) == 200
    assert status(get(curl, daemon, origin.url("/small"), "-U", "carol:bad")) == 407


# ---------------------------------------------------------------------------------- isolation


def test_isolation_same_user_name_in_two_tenants(curl, daemon, origin):
    add_tenant(daemon, "acme", "127.0.0.0/8", auth="required")
    add_tenant(daemon, "globex", "10.99.0.0/16", auth="required")
    add_user(daemon, "acme", "sam", "acme-pass")
    add_user(daemon, "globex", "sam", "globex-pass")
    # from acme's range, globex's password for the same name does not work
    assert status(get(curl, daemon, origin.url("/small"), "-U", "sam:globex-pass")) == 407
    # naming globex explicitly needs globex's credentials, not acme's
    assert status(get(curl, daemon, origin.url("/small"), "-U", "sam@globex:acme-pass")) == 407
    r = get(curl, daemon, origin.url("/small"), "-U", "sam@globex:globex-pass")
    assert status(r) == 200  # a real globex user is counted under globex
    stats = daemon.ctl("stats")["tenants"]
    assert stats["globex"]["requests"] == 2
    # a user that does not exist in the named tenant, with a valid password of another
    assert status(get(curl, daemon, origin.url("/small"), "-U", "sam@nosuch:acme-pass")) == 407


def test_isolation_headers_cannot_pick_a_tenant(tmp_path, curl, origin):
    from arcus.testing.daemon import DaemonProcess, render_profile

    profile = render_profile().replace("    escaper: direct\n", "    escaper: direct\n    trusted_proxies: [127.0.0.2/32]\n", 1)
    with DaemonProcess(tmp_path / "a", profile) as d:
        add_tenant(d, "acme", "10.1.0.0/16")
        add_tenant(d, "globex", "10.2.0.0/16", auth="required")
        add_user(d, "globex", "gil", "gil-pass")
        # not from a trusted range: the header is ignored (and not forwarded)
        r = get(curl, d, origin.url("/headers"), "-H", "X-Tenant-ID: acme")
        assert status(r) == 200 and b"X-Tenant-ID" not in r.stdout.split(b"\r\n\r\n", 1)[1]
        assert "acme" not in d.ctl("stats")["tenants"]
        # from the trusted load balancer: honoured
        r = get(curl, d, origin.url("/small"), "--interface", "127.0.0.2", "-H", "X-Tenant-ID: acme")
        assert status(r) == 200
        assert d.ctl("stats")["tenants"]["acme"]["requests"] == 1
        # a trusted header naming a tenant that needs credentials does not skip them
        r = get(curl, d, origin.url("/small"), "--interface", "127.0.0.2", "-H", "X-Tenant-ID: globex")
        assert status(r) == 407
        # and it cannot contradict an authenticated user's tenant
        r = get(curl, d, origin.url("/small"), "--interface", "127.0.0.2", "-H", "X-Tenant-ID: acme",
                "-U", "gil@globex:gil-pass")
        assert status(r) == 200
        assert d.ctl("stats")["tenants"]["globex"]["requests"] >= 1
        # an unknown tenant named by a trusted proxy is refused
        r = get(curl, d, origin.url("/small"), "--interface", "127.0.0.2", "-H", "X-Tenant-ID: nosuch")
        assert status(r) == 403


def test_server_bound_tenant_admits_only_its_users(tmp_path, curl, origin):
    from arcus.testing.daemon import DaemonProcess, render_profile

    profile = render_profile().replace("    escaper: direct\n", "    escaper: direct\n    tenant: acme\n", 1)
    d = DaemonProcess(tmp_path / "a", profile)
    # the tenant must exist before the daemon starts with a profile bound to it
    d.arcus("tenant", "add", "acme")
    with d:
        add_tenant(d, "globex", "127.0.0.0/8")
        d.ctl("tenant.set", {"name": "acme", "auth": "required"})
        add_user(d, "acme", "ann", "ann-pass")
        add_user(d, "globex", "gus", "gus-pass")
        assert status(get(curl, d, origin.url("/small"), "-U", "gus@globex:gus-pass")) == 407
        assert status(get(curl, d, origin.url("/small"), "-U", "ann:ann-pass")) == 200
        tenants = d.ctl("stats")["tenants"]
        assert "globex" not in tenants or tenants["globex"]["requests"] == 0


def test_suspended_tenant_is_refused_whatever_the_route(curl, daemon, origin):
    add_tenant(daemon, "acme", "10.5.0.0/16", auth="optional")
    add_user(daemon, "acme", "amy", "amy-pass")
    daemon.ctl("tenant.suspend", {"name": "acme"})
    r = get(curl, daemon, origin.url("/small"), "-U", "amy@acme:amy-pass")
    assert status(r) == 403 and b"tenant_suspended" in r.stdout


# ---------------------------------------------------------------------------------- policies


def test_policy_deny_block_page_report_and_redirect(curl, daemon, origin):
    add_tenant(daemon, "acme", "127.0.0.0/8")
    port = origin.port
    daemon.ctl("policy.add", {"tenant": "acme", "rule": {"id": "no-admin", "action": "deny", "path_prefixes": ["/admin"]}})
    daemon.ctl("policy.add", {"tenant": "acme", "rule": {"id": "watch-echo", "action": "report", "path_prefixes": ["/echo"]}})
    daemon.ctl("policy.add", {"tenant": "acme", "rule": {
        "id": "move-old", "action": "redirect", "path_prefixes": ["/old"], "redirect_to": "http://example.test/new"}})
    r = get(curl, daemon, origin.url("/admin/panel"))
    assert status(r) == 403
    assert b"X-Arcus-Rule: no-admin" in r.stdout
    body = r.stdout.split(b"\r\n\r\n", 1)[1]
    assert b"no-admin" in body and b"Request id" in body
    assert not any(s.target.startswith("/admin") for s in origin.requests)
    assert status(get(curl, daemon, origin.url("/echo"))) == 200  # report: logs only
    r = get(curl, daemon, origin.url("/old/page"))
    assert status(r) == 302 and b"Location: http://example.test/new" in r.stdout
    # a per-tenant block page template
    daemon.ctl("tenant.set", {"name": "acme", "block_page": "<p>ACME says no: {rule} ({request_id})</p>"})
    r = get(curl, daemon, origin.url("/admin"))
    assert b"<p>ACME says no: no-admin (" in r.stdout
    assert port == origin.port



def test_policy_import_through_the_daemon_applies_at_once_and_round_trips(curl, daemon, origin, tmp_path):
    """`arcus policy import` against the running daemon: a list of rules in one change (the next
    request obeys them), refused whole when one is bad, and what `policy list --json` prints
    imports into another tenant unchanged."""
    import json

    add_tenant(daemon, "acme", "127.0.0.0/8")
    daemon.ctl("tenant.add", {"name": "globex", "sources": []})
    rules = [{"id": f"block-{i}", "action": "deny", "hosts": [f".site{i}.example"]} for i in range(300)]
    rules.append({"id": "no-admin", "action": "deny", "path_prefixes": ["/admin"]})
    (tmp_path / "rules.json").write_text(json.dumps(rules))
    r = daemon.arcus("policy", "import", "acme", str(tmp_path / "rules.json"))
    assert r.returncode == 0, r.stderr
    assert "imported 301 rule(s) into tenant acme at positions 1-301" in r.stdout and r.stderr == ""
    res = get(curl, daemon, origin.url("/admin/x"))
    assert status(res) == 403 and b"X-Arcus-Rule: no-admin" in res.stdout
    (tmp_path / "bad.yaml").write_text("- id: fine\n  action: deny\n- id: broken\n  action: deny\n  ports: ['70000']\n")
    r = daemon.arcus("policy", "import", "acme", str(tmp_path / "bad.yaml"))
    assert r.returncode == 1 and "rule 'broken'" in r.stderr and "Traceback" not in r.stderr
    listed = daemon.arcus("policy", "list", "acme", "--json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 301  # nothing of the bad file
    (tmp_path / "listed.json").write_text(listed.stdout)
    r = daemon.arcus("policy", "import", "globex", str(tmp_path / "listed.json"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"imported": 301, "first_position": 1, "rules": 301}
    copied = json.loads(daemon.arcus("policy", "list", "globex", "--json").stdout)
    assert copied == json.loads(listed.stdout)


def test_policy_applies_to_resolved_addresses(curl, daemon, origin):
    """A name that resolves to a forbidden address is refused (DNS rebinding)."""
    add_tenant(daemon, "acme", "127.0.0.0/8")
    daemon.ctl("policy.add", {"tenant": "acme", "rule": {"id": "no-loopback", "action": "deny", "dest_cidrs": ["127.0.0.0/8"]}})
    r = get(curl, daemon, f"http://localhost:{origin.port}/small")
    assert status(r) == 403 and b"X-Arcus-Error: denied" in r.stdout
    assert status(get(curl, daemon, origin.url("/small"))) == 403  # the literal address too


def test_policy_per_user_rules_come_first(curl, daemon, origin):
    add_tenant(daemon, "acme", "127.0.0.0/8", auth="required")
    add_user(daemon, "acme", "kid", "kid-pass")
    add_user(daemon, "acme", "boss", "boss-pass")
    daemon.ctl("policy.add", {"tenant": "acme", "rule": {"id": "kids-no-echo", "action": "deny", "path_prefixes": ["/echo"], "user": "kid"}})
    assert status(get(curl, daemon, origin.url("/echo"), "-U", "kid:kid-pass")) == 403
    assert status(get(curl, daemon, origin.url("/echo"), "-U", "boss:boss-pass")) == 200


def test_connect_tunnels_are_policed_too(curl, daemon, origin):
    add_tenant(daemon, "acme", "127.0.0.0/8")
    daemon.ctl("policy.add", {"tenant": "acme", "rule": {"id": "no-tunnels", "action": "deny", "methods": ["CONNECT"]}})
    r = run_curl(curl, "-p", "-x", f"http://{daemon.proxy}", origin.url("/small"))
    assert r.returncode != 0 and b"403" in r.stderr


# ---------------------------------------------------------------------------------- limits


def test_tenant_connection_limit_is_503(curl, daemon, origin):
    add_tenant(daemon, "acme", "127.0.0.0/8", max_conns=2)
    host, port = daemon.proxy.rsplit(":", 1)
    held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(2)]
    try:
        wait_until(lambda: tenant_conns(daemon, "acme") == 2, what="acme's two connections")
        before = daemon.ctl("stats")
        out = raw_exchange(daemon.proxy, f"GET {origin.url('/small')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert out.startswith(b"HTTP/1.1 503") and b"tenant_conn_limit" in out
        after = daemon.ctl("stats")
        # the refused request counts for the tenant as for the server (requests + refusals = sent)
        assert after["servers"]["http"]["requests"] - before["servers"]["http"]["requests"] == 1
        assert after["tenants"]["acme"]["requests"] - before["tenants"]["acme"]["requests"] == 1
    finally:
        for s in held:
            s.close()
    wait_until(lambda: tenant_conns(daemon, "acme") == 0, what="acme's connections to end")
    assert status(get(curl, daemon, origin.url("/small"))) == 200


def test_tenant_request_rate_is_429_with_retry_after(curl, daemon, origin):
    add_tenant(daemon, "acme", "127.0.0.0/8", rps=2)
    urls: list[str] = []
    for _ in range(12):
        urls += ["-o", "/dev/null", origin.url("/small")]
    r = run_curl(curl, "-s", "-w", "%{http_code}\n", "-x", f"http://{daemon.proxy}", *urls)
    codes = r.stdout.decode().split()
    assert codes.count("200") >= 2 and "429" in codes
    r = get(curl, daemon, origin.url("/small"))
    if status(r) == 429:
        assert b"Retry-After: " in r.stdout


def _download(curl, d, url: str, out: dict, key: str, *extra: str) -> None:
    r = run_curl(curl, "-s", "-o", "/dev/null", "-w", "%{speed_download} %{http_code}", "-x", f"http://{d.proxy}", *extra, url, timeout=60)
    speed, code = r.stdout.decode().split()
    out[key] = (float(speed), code)


def test_bandwidth_is_shaped_and_one_tenant_at_its_limit_does_not_slow_another(curl, daemon, origin):
    add_tenant(daemon, "slow", "127.0.0.2/32", bandwidth=500000)  # bytes/s (the CLI takes "4Mbit")
    add_tenant(daemon, "fast", "127.0.0.3/32")
    size = 1_500_000
    results: dict[str, tuple[float, str]] = {}
    threads = [
        threading.Thread(target=_download, args=(curl, daemon, origin.url(f"/bytes/{size}"), results, "slow", "--interface", "127.0.0.2")),
        threading.Thread(target=_download, args=(curl, daemon, origin.url(f"/bytes/{size}"), results, "fast", "--interface", "127.0.0.3")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    slow, fast = results["slow"], results["fast"]
    assert slow[1] == "200" and fast[1] == "200"
    assert slow[0] < 500_000 * 1.6, f"shaped tenant ran at {slow[0]:.0f} B/s"
    assert fast[0] > slow[0] * 3, f"the unshaped tenant ran at {fast[0]:.0f} B/s beside {slow[0]:.0f}"


# ---------------------------------------------------------------------------------- audit


def test_audit_records_requests_and_connections_without_secrets(curl, daemon, origin):
    import json

    add_tenant(daemon, "acme", "127.0.0.0/8", auth="optional")
    add_user(daemon, "acme", "ada", "ada-secret")
    daemon.ctl("policy.add", {"tenant": "acme", "rule": {"id": "no-admin", "action": "deny", "path_prefixes": ["/admin"]}})
    assert status(get(curl, daemon, origin.url("/small?token=s3cr3t"), "-U", "ada:ada-secret")) == 200
    assert status(get(curl, daemon, origin.url("/admin"), "-U", "ada:ada-secret")) == 403
    def request_records() -> list | None:
        r = daemon.arcus("audit", "search", "--tenant", "acme", "--json")
        rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        found = [x for x in rows if x.get("kind") == "request"]
        return found if len(found) >= 2 else None

    requests = wait_until(request_records, interval=0.3, what="two request records in acme's audit log")
    ok = next(x for x in requests if x["path"] == "/small")
    assert ok["user"] == "ada" and ok["status"] == 200 and ok["bytes_down"] >= 100
    denied = next(x for x in requests if x["path"] == "/admin")
    assert denied["decision"] == "deny" and denied["rule"] == "no-admin" and denied["status"] == 403
    blocked = daemon.arcus("audit", "search", "--blocked", "--json")
    assert "/admin" in blocked.stdout and "/small" not in blocked.stdout
    everything = b"".join(p.read_bytes() for p in daemon.data_dir.glob("audit.db*"))
    everything += b"".join(p.read_bytes() for p in daemon.data_dir.glob("arcus.db*"))
    assert b"s3cr3t" not in everything and b"ada-secret" not in everything


def test_legacy_hash_is_accepted_and_upgraded_at_login(curl, daemon, origin):
    # the first sha512-crypt test vector of the SHA-crypt specification
    legacy = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
    add_tenant(daemon, "acme", "127.0.0.0/8", auth="required")
    daemon.ctl("user.add", {"tenant": "acme", "name": "old", "secret": legacy})
    assert daemon.ctl("user.show", {"tenant": "acme", "name": "old"})["secret_scheme"] != "scrypt"
    assert status(get(curl, daemon, origin.url("/small"), "-U", "old:Hello world!")) == 200
    wait_until(
        lambda: daemon.ctl("user.show", {"tenant": "acme", "name": "old"})["secret_scheme"] == "scrypt",
        timeout=15,
        interval=0.2,
        what="the legacy hash to be upgraded to scrypt",
    )
    assert status(get(curl, daemon, origin.url("/small"), "-U", "old:Hello world!")) == 200


def test_store_changes_apply_to_the_next_request_of_a_kept_alive_connection(daemon, origin):
    add_tenant(daemon, "acme", "127.0.0.0/8")
    host, port = daemon.proxy.rsplit(":", 1)
    t = f"127.0.0.1:{origin.port}"
    request = f"GET http://{t}/small HTTP/1.1\r\nHost: {t}\r\n\r\n".encode()

    def exchange(s: socket.socket) -> bytes:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += s.recv(65536)
        return head

    with socket.create_connection((host, int(port)), timeout=10) as s:
        assert exchange(s).startswith(b"HTTP/1.1 200")
        daemon.ctl("tenant.suspend", {"name": "acme"})
        assert exchange(s).startswith(b"HTTP/1.1 403")
        daemon.ctl("tenant.resume", {"name": "acme"})
        daemon.ctl("policy.add", {"tenant": "acme", "rule": {"id": "no-small", "action": "deny", "path_prefixes": ["/small"]}})
        head = exchange(s)
        assert head.startswith(b"HTTP/1.1 403") and b"X-Arcus-Rule: no-small" in head


def test_tenant_by_the_proxy_name_it_uses_over_tls(tmp_path, curl, origin):
    """Identification by SNI: the host name a client gives the proxy itself over TLS."""
    from arcus.testing.daemon import DaemonProcess, render_profile
    from tests.integration.test_https_proxy import TLS_SERVER, issue, make_ca, write_ca, write_pair

    work = tmp_path / "arcus"
    work.mkdir()
    ca_key, ca = make_ca()
    write_pair(work, *issue(ca_key, ca, names=("acme.proxy.test", "globex.proxy.test", "other.proxy.test")))
    ca_file = write_ca(tmp_path / "ca.pem", ca)
    profile = render_profile().replace("servers:\n", "servers:\n" + TLS_SERVER, 1)
    with DaemonProcess(work, profile) as d:
        port = int(d.listen("https").rsplit(":", 1)[1])
        add_tenant(d, "acme", "10.77.0.0/16", proxy_hosts=["acme.proxy.test"])
        add_tenant(d, "globex", "10.78.0.0/16", proxy_hosts=["*.proxy.test"], auth="required")

        def via(name: str, *extra: str):
            return run_curl(
                curl, "-i", "--proxy", f"https://{name}:{port}", "--proxy-cacert", str(ca_file),
                "--resolve", f"{name}:{port}:127.0.0.1", *extra, origin.url("/small"),
            )

        assert status(via("acme.proxy.test")) == 200
        assert d.ctl("stats")["tenants"]["acme"]["requests"] == 1
        assert status(via("other.proxy.test")) == 407  # the wildcard: globex, which wants credentials
        # a source range that matches a tenant comes first; SNI never overrides it
        d.ctl("tenant.add", {"name": "local", "sources": ["127.0.0.0/8"]})
        assert status(via("other.proxy.test")) == 200
        assert d.ctl("stats")["tenants"]["local"]["requests"] == 1


def test_policy_matchers_host_port_source_time_each_through_curl(curl, daemon, origin):
    add_tenant(daemon, "acme", "127.0.0.0/8")
    port = origin.port
    local = f"http://localhost:{port}/small"
    literal = origin.url("/small")

    def with_rule(rule: dict, url: str, *extra: str) -> int:
        daemon.ctl("policy.add", {"tenant": "acme", "rule": rule})
        try:
            return status(get(curl, daemon, url, *extra))
        finally:
            daemon.ctl("policy.rm", {"tenant": "acme", "id": rule["id"]})

    # loopback destinations are open to this local client; each rule below closes one way in
    assert status(get(curl, daemon, local)) == 200
    assert with_rule({"id": "exact", "action": "deny", "hosts": ["localhost"]}, local) == 403
    assert with_rule({"id": "exact-other", "action": "deny", "hosts": ["localhost.example"]}, local) == 200
    assert with_rule({"id": "wild", "action": "deny", "hosts": ["*host"]}, local) == 403
    assert with_rule({"id": "regex", "action": "deny", "hosts": ["~^loc[a-z]+$"]}, local) == 403
    assert with_rule({"id": "port", "action": "deny", "ports": [str(port)]}, literal) == 403
    assert with_rule({"id": "ports", "action": "deny", "ports": [f"{port + 1}-{port + 9}"]}, literal) == 200
    assert with_rule({"id": "src", "action": "deny", "sources": ["127.0.0.2/32"]}, literal, "--interface", "127.0.0.2") == 403
    assert with_rule({"id": "src2", "action": "deny", "sources": ["127.0.0.2/32"]}, literal) == 200
    assert with_rule({"id": "always", "action": "deny", "times": ["mon-sun"], "timezone": "Europe/Paris"}, literal) == 403
    assert with_rule({"id": "method", "action": "deny", "methods": ["POST"]}, literal, "--data", "x") == 403
    # and the child-domain form, with the trace that explains it
    daemon.ctl("policy.add", {"tenant": "acme", "rule": {"id": "child", "action": "deny", "hosts": [".localhost"]}})
    assert status(get(curl, daemon, local)) == 403
    explained = daemon.arcus("policy", "explain", "acme", "--json", local)
    assert explained.returncode == 0, explained.stderr
    assert '"rule_id": "child"' in explained.stdout


def test_default_tenant_can_be_set_to_deny(curl, daemon, origin):
    daemon.ctl("tenant.set", {"name": "default", "default_action": "deny"})
    r = get(curl, daemon, origin.url("/small"))
    assert status(r) == 403 and b"X-Arcus-Error: denied" in r.stdout
    add_tenant(daemon, "acme", "127.0.0.0/8")
    assert status(get(curl, daemon, origin.url("/small"))) == 200


def test_user_and_box_limits(tmp_path, curl, origin):
    from arcus.testing.daemon import DaemonProcess, render_profile

    profile = render_profile().replace("runtime:\n", "runtime:\n  rps: 3\n", 1)
    with DaemonProcess(tmp_path / "a", profile) as d:
        codes = run_curl(curl, "-s", "-w", "%{http_code}\n", "-x", f"http://{d.proxy}",
                         *sum((["-o", "/dev/null", origin.url("/small")] for _ in range(10)), [])).stdout.split()
        assert codes.count(b"429") >= 1 and codes.count(b"200") >= 3  # the whole box is limited
    with DaemonProcess(tmp_path / "b") as d:
        add_tenant(d, "acme", "127.0.0.0/8", auth="required")
        add_user(d, "acme", "uma", "uma-pass")
        add_user(d, "acme", "ned", "ned-pass")
        d.ctl("user.set", {"tenant": "acme", "name": "uma", "rps": 2, "max_conns": 1})
        urls = sum((["-o", "/dev/null", origin.url("/small")] for _ in range(10)), [])
        limited = run_curl(curl, "-s", "-w", "%{http_code}\n", "-U", "uma:uma-pass", "-x", f"http://{d.proxy}", *urls)
        free = run_curl(curl, "-s", "-w", "%{http_code}\n", "-U", "ned:ned-pass", "-x", f"http://{d.proxy}", *urls)
        assert b"429" in limited.stdout.split()
        assert free.stdout.split() == [b"200"] * 10  # another user of the same tenant is not slowed
        # uma may hold one connection: a second one at the same time is refused
        host, port = d.proxy.rsplit(":", 1)
        cred = "Proxy-Authorization: Basic dW1hOnVtYS1wYXNz\r\n"  # uma:uma-pass
        t = f"127.0.0.1:{origin.port}"
        requests = d.ctl("stats")["tenants"]["acme"]["requests"]
        with socket.create_connection((host, int(port)), timeout=10) as first:
            first.sendall(f"GET http://{t}/slow/2 HTTP/1.1\r\nHost: {t}\r\n{cred}\r\n".encode())
            # Once its request is counted (served, or refused by uma's rate), the connection holds uma's slot.
            wait_until(lambda: d.ctl("stats")["tenants"]["acme"]["requests"] > requests, what="uma's first request")
            out = raw_exchange(d.proxy, f"GET http://{t}/small HTTP/1.1\r\nHost: {t}\r\n{cred}Connection: close\r\n\r\n".encode())
            assert out.startswith(b"HTTP/1.1 503") and b"user_conn_limit" in out
