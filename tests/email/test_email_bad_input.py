"""A mail the core refuses is skipped with one warning; the room's next mail arrives.

What the core refuses from email is a text longer than one message may carry (256 KiB:
PostgreSQL's search index would refuse it on every retry). Before the email connector
handed in through ``ctx.hand_in``, such a mail was retried forever, its UID cursor never
moved, and every later mail of the mailbox waited behind it.
"""

from __future__ import annotations

from pathlib import Path

from mailpeer import MailServer, new_mail
from test_email_relay import ALICE, bridge

REFUSED = "cannot be stored (not a valid message: text: longer than 262144 bytes)"


async def test_refused_mail_is_skipped_with_a_warning_and_the_next_arrives(
    tmp_path: Path, mail_server: MailServer
) -> None:
    # 300 kB of prose: well under max_message_bytes, over what one message may carry
    book = "\n".join(f"line {i} of a very long report pasted into a mail" for i in range(6000))
    assert 256 * 1024 < len(book.encode()) < 1_000_000
    async with bridge(tmp_path, mail_server) as (daemon, _, stream):
        await mail_server.send(new_mail(ALICE, "before the report", "Alice"))
        await stream.wait_for(1)
        await mail_server.send(new_mail(ALICE, book, "Alice", subject="the report"))
        await mail_server.send(new_mail(ALICE, "after the report", "Alice"))
        frames = await stream.wait_for(2, timeout=15)
        assert [f["text"] for f in frames] == ["before the report", "after the report"]
        assert daemon.terminate() == 0, daemon.log()
    log = daemon.log()
    assert log.count("cannot be stored") == 1 and REFUSED in log, log
