"""Which files a Telegram message carries and how an album is grouped (pure functions)."""

from __future__ import annotations

from typing import Any

from roomlink_connectors.telegram.inbound import albums, remote_files
from telegram import Message

CHAT = {"id": -100123, "type": "supergroup", "title": "Project"}


def message(message_id: int, **fields: Any) -> dict[str, Any]:
    return {"message_id": message_id, "date": 1, "chat": CHAT, **fields}


def parsed(raw: dict[str, Any]) -> Message:
    found = Message.de_json(raw, None)
    assert found is not None
    return found


def test_the_largest_photo_size_with_a_made_up_name() -> None:
    files = remote_files(parsed(message(1, photo=[
        {"file_id": "small", "file_unique_id": "s1", "width": 90, "height": 68},
        {"file_id": "big", "file_unique_id": "b1", "width": 1280, "height": 960,
         "file_size": 9000},
        {"file_id": "mid", "file_unique_id": "m1", "width": 320, "height": 240}])))
    assert [(f.file_id, f.name, f.mime, f.size) for f in files] == [
        ("big", "photo-b1.jpg", "image/jpeg", 9000)]


def test_names_of_files_without_one() -> None:
    files = remote_files(parsed(message(
        2, document={"file_id": "d", "file_unique_id": "u2", "mime_type": "application/pdf"},
        voice={"file_id": "v", "file_unique_id": "u3", "duration": 2},
        sticker={"file_id": "s", "file_unique_id": "u4", "type": "regular", "width": 512,
                 "height": 512, "is_animated": True, "is_video": False})))
    assert [(f.name, f.mime) for f in files] == [
        ("document-u2.pdf", "application/pdf"), ("voice-u3.ogg", "audio/ogg"),
        ("sticker-u4.tgs", "application/x-tgsticker")]


def test_an_animation_counts_once_though_it_comes_with_a_document_copy() -> None:
    gif = {"file_id": "a", "file_unique_id": "u5", "width": 1, "height": 1, "duration": 1,
           "file_name": "party.mp4", "mime_type": "video/mp4"}
    files = remote_files(parsed(message(3, animation=gif, document=gif)))
    assert [f.name for f in files] == ["party.mp4"]


def test_an_albums_items_go_together_and_nothing_else_does() -> None:
    def item(update_id: int, group: str | None, chat: dict[str, Any] = CHAT
             ) -> dict[str, Any]:
        fields = {"media_group_id": group} if group else {}
        return {"update_id": update_id,
                "message": {"message_id": update_id, "date": 1, "chat": chat, **fields}}

    other_chat = {**CHAT, "id": -100999}
    updates = [item(1, None), item(2, "g1"), item(3, "g1"), item(4, "g1", other_chat),
               item(5, "g2"), item(6, None)]
    assert [[u["update_id"] for u in g] for g in albums(updates)] == [
        [1], [2, 3], [4], [5], [6]]
