"""The ICAP client (RFC 3507): services, servers, pools, and the stage an HTTP exchange runs through."""
