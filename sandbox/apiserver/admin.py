"""The sandbox's own endpoints under ``/sandbox/`` (behind the same bearer token): the state
summary, bad images, kubelet and controller timing, dependency outages, the next run of a CronJob
failing, write counts -- the knobs tests and the console turn that a real cluster would need a
broken registry (or a stopped database) for."""

from __future__ import annotations

from sandbox.apiserver.cluster import Cluster
from sandbox.apiserver.kinds import ApiError
from sandbox.apiserver.kubelet import BAD_IMAGE_MODES
from sandbox.apiserver.wire import Query, Response, json_body, method_not_allowed, not_found_path, query_str


def admin(cluster: Cluster, method: str, segs: list[str], query: Query, body: bytes) -> Response:
    route = "/".join(segs)
    if route == "state" and method == "GET":
        return Response.json(200, cluster.summary())
    if route == "bad-images":
        if method == "POST":
            payload = json_body(body)
            image = payload.get("image") if isinstance(payload, dict) else None
            mode = (payload.get("mode") if isinstance(payload, dict) else None) or "ImagePullBackOff"
            if not isinstance(image, str) or not image or mode not in BAD_IMAGE_MODES:
                raise ApiError.bad_request(
                    f'want {{"image": "<image or tag>", "mode": one of {list(BAD_IMAGE_MODES)}}}'
                )
            cluster.set_bad_image(image, mode)
        elif method == "DELETE":
            image = query_str(query, "image")
            if image:
                cluster.remove_bad_image(image)
            else:
                cluster.clear_bad_images()
        elif method != "GET":
            raise method_not_allowed(method)
        return Response.json(200, {"bad_images": cluster.bad_images})
    if route == "settings":
        if method == "POST":
            payload = json_body(body)
            if not isinstance(payload, dict) or set(payload) - {"ready_delay", "progress_deadline"}:
                raise ApiError.bad_request('want {"ready_delay": seconds, "progress_deadline": seconds|null}')
            try:
                with cluster.lock:
                    if "ready_delay" in payload:
                        cluster.ready_delay = max(float(payload["ready_delay"]), 0.0)
                    if "progress_deadline" in payload:
                        deadline = payload["progress_deadline"]
                        cluster.progress_deadline = None if deadline is None else float(deadline)
            except (TypeError, ValueError) as exc:
                raise ApiError.bad_request(f"invalid setting: {exc}") from exc
        elif method != "GET":
            raise method_not_allowed(method)
        return Response.json(
            200, {"ready_delay": cluster.ready_delay, "progress_deadline": cluster.progress_deadline}
        )
    if route == "dependencies" and cluster.traffic is not None:
        if method == "POST":  # {"postgres": false}: the exporter gauge pg_up drops to 0
            payload = json_body(body)
            if not isinstance(payload, dict) or not all(isinstance(v, bool) for v in payload.values()):
                raise ApiError.bad_request('want {"postgres"|"redis"|"rabbitmq": true|false, ...}')
            try:
                states = cluster.traffic.set_dependencies(payload)
            except ValueError as exc:
                raise ApiError.bad_request(str(exc)) from exc
            return Response.json(200, states)
        if method == "GET":
            return Response.json(200, dict(cluster.traffic.dependencies))
        raise method_not_allowed(method)
    if route == "fail-next-run":
        if method == "POST":  # the next Job of a CronJob fails: its pod exits non-zero with these lines
            return Response.json(200, _fail_next_run(cluster, json_body(body)))
        if method == "GET":
            with cluster.lock:
                pending = [{"namespace": ns, "cronjob": name} for ns, name in sorted(cluster.jobs.next_run)]
            return Response.json(200, {"pending": pending})
        raise method_not_allowed(method)
    if route == "writes" and method == "GET":
        kind, ns, name = (query_str(query, k) for k in ("kind", "namespace", "name"))
        if not kind or not name:
            raise ApiError.bad_request("kind, namespace and name are required")
        return Response.json(200, {"count": cluster.writes(kind, ns or "", name)})
    raise not_found_path()


DEFAULT_FAILURE_LOG = "pg_dump: error: connection to server failed"


def _fail_next_run(cluster: Cluster, payload: object) -> dict[str, object]:
    usage = (
        'want {"namespace": "<ns>", "cronjob": "<name>", "exit_code": 1-255 (default 1), '
        '"log": "<lines>" (default a pg_dump connection error)}'
    )
    if not isinstance(payload, dict) or set(payload) - {"namespace", "cronjob", "exit_code", "log"}:
        raise ApiError.bad_request(usage)
    ns, name = payload.get("namespace"), payload.get("cronjob")
    code, log = payload.get("exit_code", 1), payload.get("log", DEFAULT_FAILURE_LOG)
    if not isinstance(ns, str) or not ns or not isinstance(name, str) or not name or not isinstance(log, str):
        raise ApiError.bad_request(usage)
    if isinstance(code, bool) or not isinstance(code, int) or not 1 <= code <= 255:
        raise ApiError.bad_request(f"exit_code must be 1-255 (a failure), got {code!r}")
    cluster.fail_next_run(ns, name, exit_code=code, log=log)
    return {"namespace": ns, "cronjob": name, "exit_code": code, "log": log}
