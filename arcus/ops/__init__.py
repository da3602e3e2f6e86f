"""The service layer: tenants, users, policies and explain, one module per group.

Every command that changes or reads tenant data is defined once, here, as a function that takes
the :class:`arcus.store.Store` and typed arguments, checks them, does the work (one store
transaction per change) and returns plain data (JSON-ready dicts and lists). Errors are
:class:`arcus.errors.OperatorError` (or NotFound / AlreadyExists) with a hint.

Three callers, one definition: the daemon's control handlers (``arcus.runtime.tenancy``: parse
the wire arguments, call the function in a worker thread, refresh the Snapshot), the CLI's path
when no daemon runs (``arcus.cli``), and later the REST API. Nothing here knows about the socket,
the terminal or the data plane's connections; ``explain`` is given the data plane's resolver and
egress guard (:class:`arcus.ops.explain.Egress`) by its caller.
"""
