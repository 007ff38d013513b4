"""The cluster's knobs: what tests, the console and the admin endpoint turn that a real cluster
would need a broken registry, a slow node or a stopped database for -- kept apart from the
registry (``cluster``) so each room reads alone. :class:`Knobs` is a base of ``Cluster``."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

from sandbox.apiserver.controllers import DeploymentController
from sandbox.apiserver.jobs import JobController
from sandbox.apiserver.kinds import JSON
from sandbox.apiserver.kubelet import BAD_IMAGE_MODES, Kubelet


class Knobs:
    """Knobs over the kubelet, the deployment controller and the job controller."""

    lock: threading.RLock
    kubelet: Kubelet
    controller: DeploymentController
    jobs: JobController
    _reconcile_locked: Callable[..., float]

    def _wake_all(self) -> None:
        """A knob changed: the kubelet and the controller look at everything on the next tick."""
        self.kubelet.touch_all()
        self.controller.touch_all()

    @property
    def ready_delay(self) -> float:
        """Seconds from a container's start to Ready (also the crash-loop period)."""
        return self.kubelet.ready_delay

    @ready_delay.setter
    def ready_delay(self, value: float) -> None:
        with self.lock:
            self.kubelet.ready_delay = value
            self._wake_all()

    @property
    def progress_deadline(self) -> float | None:
        """Overrides every deployment's progressDeadlineSeconds when set (tests need seconds)."""
        return self.controller.progress_deadline

    @progress_deadline.setter
    def progress_deadline(self, value: float | None) -> None:
        with self.lock:
            self.controller.progress_deadline = value
            self._wake_all()

    @property
    def leaky_logs(self) -> bool:
        """`make run` turns it on so that `/payflow logs` shows the redaction at work."""
        return self.kubelet.logs.leaky_logs

    @leaky_logs.setter
    def leaky_logs(self, value: bool) -> None:
        self.kubelet.logs.leaky_logs = value

    def set_bad_image(self, image_or_tag: str, mode: str = "ImagePullBackOff") -> None:
        """Mark a full image or a bare tag as broken; pods not yet Ready pick it up on the next tick."""
        if mode not in BAD_IMAGE_MODES:
            raise ValueError(f"unknown bad-image mode {mode!r} (want one of {', '.join(BAD_IMAGE_MODES)})")
        if not image_or_tag:
            raise ValueError("image must not be empty")
        with self.lock:
            self.kubelet.bad_images[image_or_tag] = mode
            self._wake_all()

    def remove_bad_image(self, image_or_tag: str) -> None:
        with self.lock:
            self.kubelet.bad_images.pop(image_or_tag, None)
            self._wake_all()

    def clear_bad_images(self) -> None:
        with self.lock:
            self.kubelet.bad_images.clear()
            self._wake_all()

    @property
    def bad_images(self) -> dict[str, str]:
        with self.lock:
            return dict(self.kubelet.bad_images)

    def bad_image_mode(self, image: str) -> str | None:
        with self.lock:
            return self.kubelet.bad_image_mode(image)

    def fail_next_run(self, ns: str, cronjob: str, *, exit_code: int = 1, log: str = "") -> None:
        """The next Job of `cronjob` (however it is created) fails with `exit_code`, printing `log`."""
        with self.lock:
            self.jobs.fail_next_run(ns, cronjob, exit_code, log)

    def run_past(self, ns: str, cronjob: str, ago: float, *, failure: JSON | None = None) -> JSON:
        """A scheduled run of `cronjob` that started `ago` seconds back and is long over (seeding);
        `failure`: pod annotations that make it fail (``sandbox.apiserver.runs``)."""
        with self.lock:
            now = self._reconcile_locked()
            return copy.deepcopy(self.jobs.run_past(ns, cronjob, now - ago, failure))
