"""The simulated Kubernetes API server, one module per room of the real one:

- ``kinds``: the kinds served and the ``Status`` errors; ``wire``: responses and query parsing
- ``storage``: objects, the resourceVersion counter, write accounting; ``events``: Event recording
- ``selectors``, ``patches`` (merge, strategic merge, JSON patch), ``admission`` (defaulting, validation)
- ``cluster``: the registry (create/get/list/replace/patch/delete, subresources) wiring them together
- ``admission_more``: the same for Jobs, CronJobs, NetworkPolicies and ConfigMaps
- ``controllers``: the deployment controller; ``kubelet`` and ``pod_logs``: pods, probes, logs
- ``jobs``: the job controller and CronJob bookkeeping; ``runs``: pods that run to completion,
  driven by ``sandbox.payflow.io/*`` annotations; ``programs``: the backup and restore drill
- ``knobs``: what tests and the console turn (bad images, timing, the next CronJob run failing)
- ``http`` (routing), ``discovery``, ``admin`` (``/sandbox/`` knobs), ``server`` (sockets, kubeconfig)

Synthetic traffic and its ``/metrics`` live beside it in ``sandbox.traffic``.
"""

from sandbox.apiserver.cluster import Cluster
from sandbox.apiserver.kinds import ApiError
from sandbox.apiserver.server import SandboxServer

__all__ = ["ApiError", "Cluster", "SandboxServer"]
