"""May this user, in this channel, run this command? Roles come from the catalog's user IDs and
Slack user groups; group membership is read from Slack and cached briefly, so removing
someone from a group takes effect within the TTL without a call per command."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.base.roles import Role
from bot.config.catalog import Catalog, Members

log = logging.getLogger(__name__)

GroupReader = Callable[[str], Awaitable[frozenset[str]]]


@dataclass(frozen=True)
class Caller:
    user_id: str
    channel_id: str
    channel_name: str | None = None

    @property
    def in_dm(self) -> bool:
        return self.channel_id.startswith("D") or self.channel_name == "directmessage"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    needed: Role | None = None
    role: Role | None = None


class GroupLookupFailed(Exception):
    pass


class Policy:
    def __init__(self, catalog: Catalog, read_group: GroupReader, ttl: float = 60.0):
        self._catalog = catalog
        self._read_group = read_group
        self._ttl = ttl
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = asyncio.Lock()

    async def _members(self, group: str) -> frozenset[str]:
        cached = self._groups.get(group)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        async with self._lock:
            cached = self._groups.get(group)
            if cached and cached[0] > time.monotonic():
                return cached[1]
            try:
                members = await self._read_group(group)
            except Exception as exc:
                log.warning("reading user group %s failed: %s", group, exc)
                raise GroupLookupFailed(group) from exc
            self._groups[group] = (time.monotonic() + self._ttl, members)
            return members

    async def _is_member(self, user_id: str, members: Members) -> bool:
        if "*" in members.users or user_id in members.users:
            return True
        for group in members.groups:
            if user_id in await self._members(group):
                return True
        return False

    async def role_of(self, user_id: str) -> tuple[Role | None, tuple[Role, str] | None]:
        """The highest role the catalog proves for the user, and the highest role whose user group
        could not be read (None if all were). A group Slack cannot list only withholds its own
        role: it must not deny what the catalog grants by ID (an approver listed by ID blocked
        because the admins' group was unreadable)."""
        roles = self._catalog.roles
        unread: tuple[Role, str] | None = None
        for role in sorted(Role, reverse=True):
            try:
                if await self._is_member(user_id, getattr(roles, role.label)):
                    return role, unread
            except GroupLookupFailed as exc:
                unread = unread or (role, str(exc))
        return None, unread

    def channel_allowed(self, caller: Caller) -> bool:
        channels = self._catalog.channels
        if caller.in_dm:
            return channels.allow_dms
        names = {caller.channel_id}
        if caller.channel_name:
            names.add(f"#{caller.channel_name}")
        return any(c in names for c in channels.commands)

    async def check(self, caller: Caller, needed: Role | None, *, any_channel: bool = False) -> Decision:
        """`any_channel`: for clicks on buttons the bot itself posted (approvals, alerts)."""
        if needed is None:
            return Decision(True)
        if not any_channel and not self.channel_allowed(caller):
            where = ", ".join(self._catalog.channels.commands) or "no channel yet"
            return Decision(False, f"/payflow is not enabled here. Use it in {where}.", needed)
        role, unread = await self.role_of(caller.user_id)
        if (role is None or role < needed) and unread is not None and unread[0] >= needed:
            return Decision(
                False,
                f"Could not read the membership of Slack user group {unread[1]}; try again shortly.",
                needed,
                role,
            )
        if role is None or role < needed:
            has = f"you have {role.label}" if role else "you have no PayFlow role"
            return Decision(False, f"This needs the *{needed.label}* role; {has}.", needed, role)
        return Decision(True, needed=needed, role=role)
