"""Every CLI test's fixtures come from :mod:`tests.unit.cli.harness`."""

from tests.unit.cli.harness import daemon, data_dir, sock, sock_dir  # noqa: F401
