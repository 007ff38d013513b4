"""The simulated cluster's state and controllers; the rooms are in ``sandbox.apiserver``.

Kept as the short import path that bot/shell/cli.py, the console, the benches and tests use.
"""

from sandbox.apiserver.cluster import Cluster
from sandbox.apiserver.kinds import KINDS, ApiError, KindInfo
from sandbox.apiserver.kubelet import BAD_IMAGE_MODES, image_tag, parse_bad_images
from sandbox.apiserver.patches import apply_json_patch, merge_patch, strategic_merge_patch
from sandbox.apiserver.selectors import parse_label_selector

__all__ = [
    "BAD_IMAGE_MODES",
    "KINDS",
    "ApiError",
    "Cluster",
    "KindInfo",
    "apply_json_patch",
    "image_tag",
    "merge_patch",
    "parse_bad_images",
    "parse_label_selector",
    "strategic_merge_patch",
]
