"""The sandbox cluster behind a loopback server that speaks the Kubernetes REST API; the HTTP
front's rooms are ``sandbox.apiserver.http`` (routing) and ``sandbox.apiserver.server``.

Kept as the short import path that bot/shell/cli.py, the console, the benches and tests use.
"""

from sandbox.apiserver.server import CLUSTER_NAME, SandboxServer

__all__ = ["CLUSTER_NAME", "SandboxServer"]
