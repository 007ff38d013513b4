"""The Slack workspace the stand-in keeps (channels and their names, messages, files, user groups)
and the Web API methods on it; apart from the HTTP side (slack_api.py) that routes, authenticates,
injects faults and records."""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import itertools
import mimetypes
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from sandbox.slack_wire import (
    _CHANNEL_ID,
    _USER_ID,
    APP_ID,
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    MAX_TEXT_CHARS,
    TEAM_DOMAIN_URL,
    TEAM_ID,
    TEAM_NAME,
    Message,
    _arg,
    _json_list,
    _missing,
    _SlackError,
)


class SlackWorkspace(ABC):
    """The workspace's state and the Web API methods that read and change it. Thread-safe: every
    change holds `_lock`; `SlackApiStub` (slack_api.py) serves it over HTTP."""

    @property
    @abstractmethod
    def base_url(self) -> str:
        """Where the stand-in serves (SlackApiStub.base_url): upload URLs point there."""

    def __init__(self, usergroups: dict[str, list[str]] | None = None) -> None:
        self.socket_url = "ws://127.0.0.1:9/"  # what apps.connections.open hands out; tests point it
        self._usergroups = {group: list(users) for group, users in (usergroups or {}).items()}
        self._lock = threading.RLock()
        self._messages: dict[tuple[str, str], Message] = {}
        self._uploads: dict[str, bytes] = {}
        self._pending_files: dict[str, dict[str, Any]] = {}
        self._name_to_id: dict[str, str] = {}
        self._id_to_name: dict[str, str] = {}
        self._last_ts_us = 0
        self._file_numbers = itertools.count(1)
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "chat.delete": self._chat_delete,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
        }

    def channel_id(self, name: str) -> str:
        """The stable fake ID ``chat.postMessage`` answers for ``#name`` (``#pay-ops`` -> ``CPAYOPS``)."""
        key = name.removeprefix("#")
        with self._lock:
            known = self._name_to_id.get(key)
            if known is not None:
                return known
            readable = "C" + re.sub(r"[^A-Z0-9]", "", key.upper())[:20]
            channel = readable
            if len(readable) < 3 or readable in self._id_to_name:
                digest = hashlib.sha1(key.encode()).digest()
                channel = readable + base64.b32encode(digest).decode("ascii")[:6]
            self._name_to_id[key] = channel
            self._id_to_name[channel] = key
            return channel

    # ------------------------------------------------------------------ state helpers (hold the lock)

    def _next_ts(self) -> str:
        """Slack's message ID: "<epoch seconds>.<6 digits>", unique and increasing."""
        with self._lock:
            self._last_ts_us = max(time.time_ns() // 1000, self._last_ts_us + 1)
            seconds, micros = divmod(self._last_ts_us, 1_000_000)
            return f"{seconds}.{micros:06d}"

    def _lookup_channel(self, value: str) -> str:
        if not value.startswith("#") and _CHANNEL_ID.match(value):
            return value
        return self.channel_id(value)

    def _channel_arg(self, params: Mapping[str, Any], name: str = "channel", *, names: bool = False) -> str:
        """Resolve a channel argument. Only the posting methods accept ``#name`` (and a user ID, which
        opens a DM); everything else needs the ID, as on Slack -- a common bug this surfaces early."""
        value = _arg(params, name)
        if value is None:
            raise _SlackError("channel_not_found")
        if not value.startswith("#") and _CHANNEL_ID.match(value):
            return value
        if names and _USER_ID.match(value):
            return "D" + value[1:]
        if names and not value.startswith("@") and not any(ch.isspace() for ch in value):
            return self.channel_id(value)
        raise _SlackError("channel_not_found")

    def _content(self, params: Mapping[str, Any], *, required: bool) -> tuple[str, list[Any], list[Any]]:
        text = _arg(params, "text") or ""
        blocks = _json_list(params.get("blocks"), "invalid_blocks")
        attachments = _json_list(params.get("attachments"), "invalid_attachments")
        if required and not (text or blocks or attachments):
            raise _SlackError("no_text")
        if len(text) > MAX_TEXT_CHARS:
            raise _SlackError("msg_too_long")
        return text, blocks, attachments

    @staticmethod
    def _message_json(message: Message) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": "message",
            "user": message.user,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "text": message.text,
            "ts": message.ts,
            "team": TEAM_ID,
            "bot_profile": {
                "id": BOT_ID,
                "app_id": APP_ID,
                "name": BOT_NAME,
                "team_id": TEAM_ID,
                "deleted": False,
            },
        }
        if message.blocks:
            doc["blocks"] = message.blocks
        if message.attachments:
            doc["attachments"] = message.attachments
        if message.files:
            doc["files"] = message.files
            doc["upload"] = True
        if message.thread_ts:
            doc["thread_ts"] = message.thread_ts
        return doc

    def _find(self, channel: str, ts: str | None) -> Message:
        message = self._messages.get((channel, ts or ""))
        if message is None:
            raise _SlackError("message_not_found")
        return message

    # ------------------------------------------------------------------ Web API methods

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        """Socket Mode: a websocket URL to connect to (a test's local websocket server)."""
        return {"url": self.socket_url}

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": TEAM_DOMAIN_URL,
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_arg(params, names=True)
        text, blocks, attachments = self._content(params, required=True)
        with self._lock:
            ts = self._next_ts()
            message = Message(
                channel, ts, text, blocks, _arg(params, "thread_ts"), BOT_USER_ID, [], attachments
            )
            self._messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": self._message_json(message)}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_arg(params)
        text, blocks, attachments = self._content(params, required=True)
        with self._lock:
            old = self._find(channel, _arg(params, "ts"))
            message = dataclasses.replace(
                old,
                text=text if _arg(params, "text") is not None else old.text,
                blocks=blocks if "blocks" in params else old.blocks,
                attachments=attachments if "attachments" in params else old.attachments,
            )
            self._messages[(channel, old.ts)] = message
        return {
            "channel": channel,
            "ts": old.ts,
            "text": message.text,
            "message": self._message_json(message),
        }

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        self._channel_arg(params, names=True)
        user = _arg(params, "user")
        if user is None or not _USER_ID.match(user):
            raise _SlackError("user_not_found")
        self._content(params, required=True)
        return {"message_ts": self._next_ts()}  # ephemeral: never part of the channel's history

    def _chat_get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_arg(params)
        with self._lock:
            message = self._find(channel, _arg(params, "message_ts"))
        permalink = f"{TEAM_DOMAIN_URL}archives/{channel}/p{message.ts.replace('.', '')}"
        if message.thread_ts and message.thread_ts != message.ts:
            permalink += f"?thread_ts={message.thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": permalink}

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_arg(params)
        with self._lock:
            message = self._find(channel, _arg(params, "ts"))
            del self._messages[(channel, message.ts)]
        return {"channel": channel, "ts": message.ts}

    def _files_get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        filename, length = _arg(params, "filename"), _arg(params, "length")
        missing = [name for name, value in (("filename", filename), ("length", length)) if value is None]
        if missing:
            raise _missing(*missing)
        try:
            declared = int(str(length))
        except ValueError:
            raise _SlackError(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] invalid length"]}
            ) from None
        file_id = f"F{next(self._file_numbers):010d}"
        with self._lock:
            self._pending_files[file_id] = {
                "name": filename,
                "length": declared,
                "alt_txt": _arg(params, "alt_txt"),
                "snippet_type": _arg(params, "snippet_type"),
            }
        return {"upload_url": f"{self.base_url}upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        files = params.get("files")
        if (
            not isinstance(files, list)
            or not files
            or not all(isinstance(f, dict) and f.get("id") for f in files)
        ):
            raise _missing("files")
        targets: list[str] = []
        if _arg(params, "channel_id") is not None:
            targets.append(self._channel_arg(params, "channel_id"))
        for channel in (_arg(params, "channels") or "").split(","):
            if channel.strip():
                targets.append(self._channel_arg({"channel": channel.strip()}))
        comment = _arg(params, "initial_comment") or ""
        thread_ts = _arg(params, "thread_ts")
        with self._lock:
            if any(str(f["id"]) not in self._uploads for f in files):
                raise _SlackError("file_not_found")
            now = int(time.time())
            shared: list[dict[str, Any]] = []
            for item in files:
                file_id = str(item["id"])
                meta = self._pending_files[file_id]
                name = str(meta["name"])
                shared.append(
                    {
                        "id": file_id,
                        "created": now,
                        "timestamp": now,
                        "name": name,
                        "title": str(item.get("title") or name),
                        "mimetype": mimetypes.guess_type(name)[0] or "application/octet-stream",
                        "filetype": name.rsplit(".", 1)[-1].lower() if "." in name else "binary",
                        "user": BOT_USER_ID,
                        "user_team": TEAM_ID,
                        "size": len(self._uploads[file_id]),
                        "mode": "hosted",
                        "is_external": False,
                        "is_public": bool(targets),
                        "url_private": f"https://files.slack.com/files-pri/{TEAM_ID}-{file_id}/{quote(name)}",
                        "url_private_download": (
                            f"https://files.slack.com/files-pri/{TEAM_ID}-{file_id}/download/{quote(name)}"
                        ),
                        "permalink": f"{TEAM_DOMAIN_URL}files/{BOT_USER_ID}/{file_id}/{quote(name)}",
                        "channels": list(targets),
                        **({"alt_txt": meta["alt_txt"]} if meta.get("alt_txt") else {}),
                    }
                )
            for channel in targets:
                ts = self._next_ts()
                self._messages[(channel, ts)] = Message(
                    channel, ts, comment, [], thread_ts, BOT_USER_ID, copy.deepcopy(shared)
                )
        return {"files": shared}

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = _arg(params, "usergroup")
        if group is None:
            raise _missing("usergroup")
        with self._lock:
            users = self._usergroups.get(group)
        if users is None:
            raise _SlackError("no_such_subteam")
        return {"users": list(users)}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = _arg(params, "user")
        if user is None or not _USER_ID.match(user):
            raise _SlackError("user_not_found")
        is_bot = user == BOT_USER_ID
        name = BOT_NAME if is_bot else f"user.{user[1:].lower()}"
        real_name = "PayFlow Bot" if is_bot else f"User {user}"
        return {
            "user": {
                "id": user,
                "team_id": TEAM_ID,
                "name": name,
                "real_name": real_name,
                "deleted": False,
                "is_bot": is_bot,
                "tz": "America/New_York",
                "tz_label": "Eastern Standard Time",
                "tz_offset": -18000,
                "profile": {"real_name": real_name, "display_name": name},
            }
        }

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_arg(params)
        if channel.startswith("D"):
            return {"channel": {"id": channel, "is_im": True, "is_channel": False, "user": "U" + channel[1:]}}
        with self._lock:
            name = self._id_to_name.get(channel, channel.lower())
        return {
            "channel": {
                "id": channel,
                "name": name,
                "is_channel": channel.startswith("C"),
                "is_group": channel.startswith("G"),
                "is_private": channel.startswith("G"),
                "is_im": False,
                "is_archived": False,
                "is_member": True,
            }
        }
