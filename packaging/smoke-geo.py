"""Writes packaging/smoke-geo.mmdb, the MaxMind DB the binary's smoke test routes by.

127.0.0.0/8 is "ZZ" (continent "AN"); nothing else is known. Run it again only to change the
file: `.venv/bin/python packaging/smoke-geo.py` (mmdb-writer comes with the test extra).
"""

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

writer = MMDBWriter(ip_version=6, database_type="GeoLite2-Country", ipv4_compatible=True)
writer.insert_network(IPSet(["127.0.0.0/8"]), {"country": {"iso_code": "ZZ"}, "continent": {"code": "AN"}})
writer.to_db_file(str(Path(__file__).with_name("smoke-geo.mmdb")))
