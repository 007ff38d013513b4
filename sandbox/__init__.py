"""A process-local simulated Kubernetes cluster that the real ``kubernetes`` client can talk to.

``Cluster`` holds the state and simulates the controllers; ``SandboxServer`` serves it over the
Kubernetes REST API on loopback and writes a kubeconfig for it (both in ``sandbox.apiserver``).
"""

from sandbox.apiserver import ApiError, Cluster, SandboxServer

__all__ = ["ApiError", "Cluster", "SandboxServer"]
