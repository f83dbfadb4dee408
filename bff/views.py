"""The JSON shapes the BFF answers with: the one place a gRPC message becomes JSON.

64-bit ids are strings (JavaScript numbers lose precision past 2^53).
"""

from __future__ import annotations

from typing import Any

from protos.chat.v1 import common_pb2, groups_pb2, history_pb2, messaging_pb2

ACTIONS = {
    common_pb2.ChatChange.CREATED: "created",
    common_pb2.ChatChange.RENAMED: "renamed",
    common_pb2.ChatChange.ADDED: "added",
    common_pb2.ChatChange.REMOVED: "removed",
    common_pb2.ChatChange.LEFT: "left",
    common_pb2.ChatChange.ROLE_CHANGED: "role_changed",
    common_pb2.ChatChange.OPENED: "opened",
}


AMENDMENTS = {
    common_pb2.Amendment.EDITED: "edited",
    common_pb2.Amendment.DELETED: "deleted",
    common_pb2.Amendment.REACTION_ADDED: "reaction_added",
    common_pb2.Amendment.REACTION_REMOVED: "reaction_removed",
}


def message(m: common_pb2.Message) -> dict[str, Any]:
    found: dict[str, Any] = {
        "message_id": str(m.message_id),
        "chat_id": m.chat_id,
        "sender_id": str(m.sender_id),
        "body": m.body,
        "client_message_id": m.client_message_id,
        "created_at_ms": m.created_at_ms,
    }
    if m.HasField("change"):
        found["change"] = change(m.change)
    if m.HasField("amendment"):
        a = m.amendment
        found["amendment"] = {
            "action": AMENDMENTS.get(a.action, "unknown"),
            "message_id": str(a.message_id),
            "message_sender_id": str(a.message_sender_id),
            "emoji": a.emoji,
        }
    if m.edited_at_ms:
        found["edited_at_ms"] = m.edited_at_ms
    if m.deleted:
        found["deleted"] = True
    if m.reactions:
        found["reactions"] = [
            {"emoji": r.emoji, "count": r.count, "mine": r.mine} for r in m.reactions
        ]
    if m.attachments:
        found["attachments"] = [attachment(a) for a in m.attachments]
    return found


def attachment(a: common_pb2.Attachment) -> dict[str, Any]:
    found: dict[str, Any] = {
        "attachment_id": str(a.attachment_id),
        "name": a.name,
        "size": a.size,
        "content_type": a.content_type,
    }
    if a.sha256:
        found["sha256"] = a.sha256
    if a.width and a.height:
        found["width"], found["height"] = a.width, a.height
    return found


def upload(u: messaging_pb2.Upload) -> dict[str, Any]:
    return {
        "attachment_id": str(u.attachment_id),
        "method": "PUT",
        "url": u.url,
        "headers": dict(u.headers),
        "expires_at_ms": u.expires_at_ms,
    }


def attachment_link(link: messaging_pb2.AttachmentLink) -> dict[str, Any]:
    return {
        "url": link.url,
        "expires_at_ms": link.expires_at_ms,
        "attachment": attachment(link.attachment),
    }


def change(c: common_pb2.ChatChange) -> dict[str, Any]:
    return {
        "action": ACTIONS.get(c.action, "unknown"),
        "name": c.name,
        "user_ids": [str(u) for u in c.user_ids],
        "role": c.role,
        "version": c.version,
    }


def group(g: groups_pb2.Group) -> dict[str, Any]:
    return {
        "chat_id": g.chat_id,
        "kind": "group",
        "name": g.name,
        "version": g.version,
        "change_id": str(g.change_id) if g.change_id else None,
        "members": [
            {"user_id": str(m.user_id), "role": m.role, "since_id": str(m.since_id)}
            for m in g.members
        ],
    }


def user(u: history_pb2.User | messaging_pb2.Profile) -> dict[str, Any]:
    return {
        "user_id": str(u.user_id),
        "username": u.username,
        "display_name": u.display_name,
        "avatar_id": str(u.avatar_id) if u.avatar_id else None,
    }


def chat(c: common_pb2.Chat) -> dict[str, Any]:
    return {"chat_id": c.chat_id, "kind": c.kind, "member_ids": [str(m) for m in c.member_ids]}


def chat_list(reply: history_pb2.ListChatsResponse) -> dict[str, Any]:
    return {
        "chats": [
            {
                "chat_id": c.chat_id,
                "kind": c.kind,
                "member_ids": [str(m) for m in c.member_ids],
                "last_message_id": str(c.last_message_id) if c.last_message_id else None,
                "last_sender_id": str(c.last_sender_id) if c.last_sender_id else None,
                "last_preview": c.last_preview,
                "unread_count": c.unread_count,
                "name": c.name,
                "member": c.member,
            }
            for c in reply.chats
        ],
        "next_cursor": reply.next_cursor or None,
    }


def page(
    reply: history_pb2.GetHistoryResponse | history_pb2.SearchMessagesResponse,
) -> dict[str, Any]:
    return {"messages": [message(m) for m in reply.messages], "has_more": reply.has_more}


def readers(reply: history_pb2.GetReadersResponse) -> dict[str, Any]:
    return {
        "readers": [mark(r) for r in reply.readers],
        "delivered": [mark(r) for r in reply.delivered],
    }


def mark(r: history_pb2.Reader) -> dict[str, Any]:
    return {
        "user_id": str(r.user_id),
        "read_up_to": str(r.read_up_to),
        "delivered_up_to": str(r.delivered_up_to),
    }


def presence(p: messaging_pb2.Presence) -> dict[str, Any]:
    return {"user_id": str(p.user_id), "online": p.online, "last_seen_ms": p.last_seen_ms or None}


def presences(reply: messaging_pb2.GetPresenceResponse) -> dict[str, Any]:
    return {"presences": [presence(p) for p in reply.presences]}


def blocked(reply: messaging_pb2.ListBlockedResponse) -> dict[str, Any]:
    return {
        "blocked": [
            {"user_id": str(b.user_id), "blocked_at_ms": b.blocked_at_ms} for b in reply.blocked
        ]
    }


def sent(reply: messaging_pb2.SendResponse) -> dict[str, Any]:
    return {
        "message_id": str(reply.message_id),
        "created_at_ms": reply.created_at_ms,
        "duplicate": reply.duplicate,
    }


def event(e: messaging_pb2.ClientEvent) -> dict[str, Any] | None:
    """A live event for a browser (WebSocket frame or SSE data); None for what the BFF keeps
    to itself (a Redirect: it follows the move, the browser's stream does not drop)."""
    kind = e.WhichOneof("event")
    if kind == "message":
        return {"type": "message", "cursor": e.cursor, "message": message(e.message)}
    if kind == "caught_up":
        return {"type": "caught_up", "cursor": e.cursor}
    if kind == "resync_required":
        return {"type": "resync_required", "cursor": e.cursor, "reason": e.resync_required.reason}
    if kind == "resume_required":
        return {"type": "resume_required", "cursor": e.cursor, "reason": e.resume_required.reason}
    if kind == "receipt":
        r = e.receipt
        receipt = {
            "chat_id": r.chat_id,
            "user_id": str(r.user_id),
            "read_up_to": str(r.read_up_to),
            "delivered_up_to": str(r.delivered_up_to),
        }
        return {"type": "receipt", "cursor": e.cursor, "receipt": receipt}
    if kind == "typing":
        t = e.typing
        typing = {
            "chat_id": t.chat_id,
            "user_id": str(t.user_id),
            "stopped": t.stopped,
            "expires_at_ms": t.expires_at_ms,
        }
        return {"type": "typing", "cursor": e.cursor, "typing": typing}
    if kind == "presence":
        return {"type": "presence", "cursor": e.cursor, "presence": presence(e.presence)}
    if kind == "profile":
        return {"type": "profile", "cursor": e.cursor, "profile": user(e.profile)}
    return None
