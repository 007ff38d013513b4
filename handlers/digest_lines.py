"""The extension point for lines other commands add to the digests: backups, security.

A provider is registered for the digest kinds it belongs to (`daily`, `weekly`, `monthly`) and
returns its figures (label: the line's title, value: what it says, verdict). Each is given one
deadline; one that fails, hangs or raises gives a line saying so: a broken extra never stops
the digest, and never shows as healthy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.domain.views import Figure
from handlers.base import Deps

log = logging.getLogger(__name__)

Provider = Callable[[Deps], Awaitable[tuple[Figure, ...]]]
KINDS = ("daily", "weekly", "monthly")
DEADLINE = 10.0  # seconds for each provider; its own gateway calls carry their own deadlines too
PROVIDERS: dict[str, list[tuple[str, Provider]]] = {kind: [] for kind in KINDS}


def digest_lines(title: str, *kinds: str) -> Callable[[Provider], Provider]:
    """Register `fn` as the provider of the `title` line(s) of the digests of `kinds`."""
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"digest kinds are {', '.join(KINDS)}; got {sorted(unknown) or 'none'}")

    def register(fn: Provider) -> Provider:
        for kind in kinds:
            PROVIDERS[kind].append((title, fn))
        return fn

    return register


async def extra_lines(deps: Deps, kind: str) -> tuple[Figure, ...]:
    """Every registered provider's figures for this kind of digest, run together, in order."""
    providers = PROVIDERS.get(kind, [])

    async def one(title: str, fn: Provider) -> tuple[Figure, ...]:
        try:
            return await asyncio.wait_for(fn(deps), DEADLINE)
        except TimeoutError:
            return (Figure(title, f"no answer within {DEADLINE:g} s", "", "unknown"),)
        except Exception as exc:
            log.exception("digest line %s failed", title)
            return (Figure(title, f"could not be read ({type(exc).__name__})", "", "unknown"),)

    found = await asyncio.gather(*(one(title, fn) for title, fn in providers))
    return tuple(f for figures in found for f in figures)
