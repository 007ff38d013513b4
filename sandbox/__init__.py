"""A process-local simulated Kubernetes cluster that the real ``kubernetes`` client can talk to.

``Cluster`` holds the state and simulates the controllers; ``SandboxServer`` serves it over the
Kubernetes REST API on loopback and writes a kubeconfig for it.
"""

from sandbox.cluster import ApiError, Cluster
from sandbox.k8s_api import SandboxServer

__all__ = ["ApiError", "Cluster", "SandboxServer"]
