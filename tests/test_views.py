"""`View`, the union of what handlers answer with, and the renderings in bot/chat/blocks/ name the
same views: a view without a rendering would fail only when a user asks for it."""

from __future__ import annotations

from typing import get_args

from bot.chat.blocks import render
from bot.domain.views import View


def test_every_view_has_a_rendering_and_every_rendering_is_a_view() -> None:
    rendered = set(render.registry) - {object}
    views = set(get_args(View))
    assert not views - rendered, f"views without a rendering: {sorted(t.__name__ for t in views - rendered)}"
    assert not rendered - views, f"renderings of non-views: {sorted(t.__name__ for t in rendered - views)}"
