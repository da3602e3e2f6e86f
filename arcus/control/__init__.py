"""The control plane's wire: protocol (messages), server (in the daemon), client (CLI, TUI).

Import the concrete modules (``arcus.control.client``, ``arcus.control.server``): the CLI
must not pay for asyncio server code, and PyInstaller sees only explicit imports.
"""
