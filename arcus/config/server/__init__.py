"""Server types: ``type:`` value -> parser. A new server type is one module plus one entry here.

Imports are explicit (no discovery by string) so a frozen binary sees every module.
"""

from __future__ import annotations

from arcus.config.objects import Family
from arcus.config.server import http_proxy

SERVERS = Family(
    name="server",
    plural="servers",
    types={
        http_proxy.TYPE: http_proxy.SPEC,
    },
)
