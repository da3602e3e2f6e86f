"""The profile as frozen dataclasses, built once per Snapshot.

The loader (``arcus.config.loader``) turns YAML into these objects, one key at a time, with
every error located as ``file:line``. Objects refer to each other by name
(``escaper: direct``), never by nesting; the cross-reference check lives in the loader.

Durations are floats in seconds, sizes ints in bytes, addresses ``(host, port)`` tuples.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Every wait on the data path is bounded by one of these (seconds)."""

    client_header: float = 30.0  # receive a whole request head once its first byte arrived
    client_idle: float = 60.0  # keep-alive wait for the next request
    client_body: float = 60.0  # longest silence while reading a request body
    upstream_connect: float = 10.0  # TCP connect to the upstream (including resolution)
    upstream_response: float = 60.0  # wait for the response head after the request was sent
    upstream_body: float = 60.0  # longest silence while reading a response body
    upstream_idle: float = 30.0  # how long a pooled keep-alive upstream connection is kept
    tunnel_idle: float = 300.0  # CONNECT tunnel with no traffic either way
    expect_continue: float = 1.0  # wait for 100 Continue before sending the body anyway


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_request_line: int = 8192
    max_header_bytes: int = 65536  # the whole head, request line included
    max_headers: int = 100
    max_pool_per_host: int = 256  # idle upstream keep-alive connections per (host, port)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    name: str
    type: str  # "http_proxy"
    listen: tuple[tuple[str, int], ...]  # one or more (host, port)
    escaper: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: HttpLimits = field(default_factory=HttpLimits)
    max_connections: int = 10000  # beyond this, 503 and close
    tenant: str | None = None  # every client of this server belongs to this tenant
    trusted_proxies: tuple[str, ...] = ()  # source CIDRs whose X-Tenant-ID header is honoured
    line: int | None = None  # where it was declared, for error messages


@dataclass(frozen=True, slots=True)
class EscaperConfig:
    name: str
    type: str  # "direct_fixed" | "dummy_deny"
    resolver: str | None = None  # direct_fixed: which resolver
    bind: str | None = None  # direct_fixed: source address for upstream connections
    resolve_strategy: str = "ipv4_first"  # ipv4_first|ipv6_first|ipv4_only|ipv6_only
    # Egress guard: special-purpose destinations (loopback, the box's own addresses,
    # link-local and the metadata address, unspecified, multicast, reserved) are refused
    # unless listed here. Loopback stays open to clients that are themselves on loopback.
    allow_special: tuple[str, ...] = ()  # CIDRs opened anyway
    loopback_for_local_clients: bool = True
    line: int | None = None

    @property
    def next_escapers(self) -> tuple[str, ...]:
        """Names of the escapers this one hands connections to (route types override it); a leaf: none."""
        return ()


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    name: str
    type: str  # "system"
    timeout: float = 5.0
    cache_ttl: float = 60.0  # positive answers (getaddrinfo gives no TTL)
    negative_ttl: float = 5.0  # failed lookups
    max_entries: int = 10000
    line: int | None = None


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"  # debug|info|warning|error
    target: str = "stderr"  # "stderr" or a file path
    access: bool = True  # one line per request / connection
    format: str = "text"  # text|json: one line per event either way
    max_size: int | None = None  # a file target rotates at this many bytes; None: never (logrotate + SIGHUP)
    backups: int = 5  # rotated files kept (target.1 ... target.N)
    tenants: tuple[tuple[str, str], ...] = ()  # (tenant, minimum level) for lines about that tenant


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    graceful_timeout: float = 30.0  # bound on draining live connections at shutdown
    # Box-wide limits, above every tenant's and user's (None: unlimited).
    max_connections: int | None = None  # client connections over all servers: 503 beyond
    rps: float | None = None  # requests per second over all tenants: 429 beyond
    bandwidth: float | None = None  # bytes per second, each direction, shaped by pausing reads


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """The audit log: one event per connection and per HTTP request, in SQLite (audit.db)."""

    enabled: bool = True
    retention: float = 30 * 86400.0  # events older than this are deleted (seconds)
    max_size: int = 1 << 30  # the oldest events are deleted beyond this many bytes
    queue: int = 10000  # events waiting to be written; when full, new ones are dropped and counted
    batch: int = 500  # events written per transaction at most
    flush_interval: float = 1.0  # longest wait before a partial batch is written


@dataclass(frozen=True, slots=True)
class StatsdConfig:
    """The figures of ``/metrics`` pushed to a StatsD server over UDP (DogStatsD tags)."""

    target: tuple[str, int]
    interval: float = 10.0  # seconds between two flushes
    prefix: str = "arcus"  # metric names start with it and a dot
    max_packet: int = 1432  # bytes per datagram at most (fits an Ethernet MTU with headers)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The metrics listener: Prometheus text at ``/metrics``, ``/health`` and ``/ready`` over HTTP;
    and StatsD."""

    listen: tuple[str, int] | None = None  # None: no listener
    statsd: StatsdConfig | None = None  # None: no StatsD
    max_users: int = 100  # users with a label of their own; the others are folded into user="_other"
    line: int | None = None  # where the section was declared, for bind errors


@dataclass(frozen=True, slots=True)
class IcapServer:
    """One ICAP server of a service: ``icap://host:port/path`` (RFC 3507 4.2; port 1344 by default)."""

    host: str
    port: int
    path: str  # the service on that server, "/avscan"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"icap://{host}:{self.port}{self.path}"


@dataclass(frozen=True, slots=True)
class IcapServiceConfig:
    """An ICAP service (``icap_services:``): its servers in failover order and their bounds.
    Tenants choose a service by name (``arcus tenant set T --icap-service NAME``)."""

    name: str
    servers: tuple[IcapServer, ...]
    connect_timeout: float = 3.0  # TCP connect to one server
    timeout: float = 30.0  # longest wait for one read or write of an ICAP exchange
    max_connections: int = 32  # per server; lowered further by the server's Max-Connections
    idle_timeout: float = 30.0  # an idle pooled connection is closed after this
    options_ttl: float = 300.0  # OPTIONS kept this long when the server gives no Options-TTL
    retry_after: float = 5.0  # a server that failed is skipped this long (the next one is tried)
    line: int | None = None


@dataclass(frozen=True, slots=True)
class InterceptRule:
    """One intercept/splice rule (``docs/interception.md``): by host pattern or pinned-app category."""

    action: str  # "intercept" | "splice"
    hosts: tuple[str, ...] = ()  # host patterns (arcus.policy.hosts forms)
    pinned: tuple[str, ...] = ()  # categories of the shipped bypass list ("all": every one)
    insecure: bool = False  # intercept without verifying the upstream's certificate (lab use; logged)
    name: str = ""  # shown in records; default "intercept rule N"
    line: int | None = None


@dataclass(frozen=True, slots=True)
class InterceptSettings:
    """TLS interception for the box (``intercept:``) or one tenant (``intercept: tenants: NAME:``)."""

    enabled: bool = False
    upstream_ca: str | None = None  # CA bundle the upstream is verified against (None: the system's roots)
    bypass_pinned: bool = True  # the shipped list of certificate-pinned applications is spliced
    rules: tuple[InterceptRule, ...] = ()
    line: int | None = None


@dataclass(frozen=True, slots=True)
class InterceptConfig:
    box: InterceptSettings = field(default_factory=InterceptSettings)
    # per tenant: unset keys inherit the box's; a tenant's rules come before the box's
    tenants: tuple[tuple[str, InterceptSettings, frozenset[str]], ...] = ()  # (name, settings, keys set)


@dataclass(frozen=True, slots=True)
class Profile:
    source: str  # the file name (or "<embedded:default>") errors refer to
    servers: tuple[ServerConfig, ...]
    escapers: tuple[EscaperConfig, ...]
    resolvers: tuple[ResolverConfig, ...]
    log: LogConfig = field(default_factory=LogConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    icap_services: tuple[IcapServiceConfig, ...] = ()
    intercept: InterceptConfig = field(default_factory=InterceptConfig)

    def escaper(self, name: str) -> EscaperConfig:
        return next(e for e in self.escapers if e.name == name)

    def resolver(self, name: str) -> ResolverConfig:
        return next(r for r in self.resolvers if r.name == name)
