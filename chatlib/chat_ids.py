"""What a chat id is, for every component: a direct chat between users a < b is ``d:<a>:<b>``
(so its members are in its id and both members open the same chat), a group is
``g:<snowflake>``. Who may do what in a chat is messaging's to decide; its id's shape is not."""

from __future__ import annotations

import re

from chatlib.errors import InvalidArgument

DIRECT = re.compile(r"d:[0-9]{1,20}:[0-9]{1,20}")
GROUP = re.compile(r"g:[0-9]{1,20}")


def direct_chat_id(a: int, b: int) -> str:
    low, high = sorted((a, b))
    return f"d:{low}:{high}"


def direct_members(chat_id: str) -> frozenset[int]:
    """A direct chat's two members, from its id ("d:<low>:<high>"); none for a group."""
    parts = chat_id.split(":")
    if parts[0] != "d" or len(parts) != 3:
        return frozenset()
    return frozenset(int(p) for p in parts[1:] if p.isdigit())


def check_chat_id(chat_id: str) -> None:
    if not chat_id:
        raise InvalidArgument("chat_id is required")
    if not (DIRECT.fullmatch(chat_id) or GROUP.fullmatch(chat_id)):
        raise InvalidArgument(f"chat_id {chat_id[:64]!r} is not a chat id")
