"""The XMPP connector in the real ``roomlink`` process, in a room of a real Prosody:
formatting both ways, actions, hostile nicks, joins and leaves, the author check on
corrections and retractions, and what was said while roomlink was stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridgekit import ROOM, bridge
from xmppkit import Person, Prosody

from conformance import wait_until


async def test_formatting_both_ways_actions_and_a_hostile_nick(tmp_path: Path,
                                                               prosody: Prosody) -> None:
    async with bridge(tmp_path, prosody) as b:
        mallory = await Person.join(prosody, ROOM, "<b>boss</b> *x* @room")
        await mallory.say("*bold* _it_ ~gone~ `co*de` <i>not html</i>")
        await mallory.say("/me waves")
        said, action = await b.wait_frames(2)
        assert said["author"]["name"] == "<b>boss</b> *x* @room"  # a nick stays text
        assert said["text"] == r"**bold** *it* ~~gone~~ `co*de` \<i\>not html\</i\>"
        assert (action["kind"], action["text"]) == ("action", "waves")

        await b.api.post("**strong**, *em*, ~~struck~~ and `code`", "bob")
        await b.api.post("snake_case and 2 * 3 stay as they are", "bob")
        await b.api.post("stretches", "bob")
        styled, plain, _ = await b.wait_bodies(3)
        assert styled == "<bob> *strong*, _em_, ~struck~ and `code`"
        assert plain == "<bob> snake_case and 2 * 3 stay as they are"
        xml = {s.body: s.xml for s in b.watcher.seen}
        assert "urn:xmpp:styling:0" not in xml[styled]
        assert "<unstyled" in xml[plain]  # clients must not style stray asterisks

        words = [f"word{n}" for n in range(4000)]  # about 31,000 characters: 4 messages
        await b.api.post(" ".join(words), "bob")
        parts = (await b.wait_bodies(7))[3:]
        assert all(p.startswith("<bob> ") and len(p) <= 10_010 for p in parts), parts
        assert " ".join(p.removeprefix("<bob> ") for p in parts).split() == words
        await mallory.leave()


async def test_joins_leaves_and_the_subject(tmp_path: Path, prosody: Prosody) -> None:
    async with bridge(tmp_path, prosody, join_part=True, topic=True) as b:
        # the watcher was there before the bridge: a change of its status is no join
        b.watcher.send_presence(pto=f"{ROOM}/watcher", pshow="away")
        carol = await Person.join(prosody, ROOM, "carol")
        await wait_until(lambda: len(b.frames()) >= 1, 20, lambda: str(b.frames()))
        carol.plugin["xep_0045"].set_subject(ROOM, "the *new* subject")
        await wait_until(lambda: len(b.frames()) >= 2, 20, lambda: str(b.frames()))
        await carol.leave()
        await wait_until(lambda: len(b.frames()) >= 3, 20, lambda: str(b.frames()))
        joined, subject, left = b.frames()[:3]
        assert (joined["kind"], joined["author"]["name"], joined["text"]) == (
            "join", "carol", "joined")
        assert (subject["kind"], subject["text"]) == ("topic", r"the \*new\* subject")
        assert (left["kind"], left["author"]["name"]) == ("part", "carol")


async def test_only_the_author_can_correct_or_retract(tmp_path: Path,
                                                      prosody: Prosody) -> None:
    async with bridge(tmp_path, prosody) as b:
        alice = await Person.join(prosody, ROOM, "alice")
        bob = await Person.join(prosody, ROOM, "bob")
        original = await alice.say("alice's words")
        assert original.stanza_id
        await b.wait_frames(1)
        # bob names alice's message: neither an edit nor a new message may come of it
        await bob.correct(original.msg_id, "words put in alice's mouth")
        await bob.retract(original.stanza_id)
        await alice.correct("no-such-message", "a correction of nothing")
        # nor can anyone change what the bridge posted for the other room
        await b.api.post("from the web", "carol")
        [posted] = await b.wait_bodies(1)
        relayed = next(s for s in b.watcher.seen if s.body == posted)
        assert relayed.stanza_id
        await bob.correct(relayed.msg_id, "<carol> words put in carol's mouth")
        await bob.retract(relayed.stanza_id)
        await alice.say("alice again")
        await b.wait_frames(2)
        await alice.correct(original.msg_id, "alice's own correction")
        await alice.retract(original.stanza_id)
        await b.wait_frames(4)
        await asyncio.sleep(1.0)
        frames = [(f["kind"], f["text"]) for f in b.frames()]
        assert frames == [("message", "alice's words"), ("message", "alice again"),
                          ("edit", "alice's own correction"), ("delete", "")], frames
        refused = [ln for ln in b.daemon.log().splitlines() if "not relayed" in ln]
        assert len(refused) == 5, refused
        assert "correction" in refused[0] and "bob" in refused[0]
        assert "retraction" in refused[1] and "bob" in refused[1]
        await alice.leave()
        await bob.leave()


async def test_said_while_stopped_arrives_after_start(tmp_path: Path,
                                                      prosody: Prosody) -> None:
    """The room's archive (Prosody's mod_muc_mam) fills the gap, once and in order."""
    async with bridge(tmp_path, prosody) as b:
        alice = await Person.join(prosody, ROOM, "alice")
        await alice.say("before the stop")
        await b.wait_frames(1)
        assert b.daemon.terminate() == 0
        missed = [f"while stopped {n}" for n in range(1, 131)]  # more than a page (100)
        for text in missed:
            await alice.say(text)
        await b.daemon.start()
        await b.wait_in_room()
        await alice.say("after the start")
        await b.wait_frames(len(missed) + 2, timeout=90)
        await asyncio.sleep(1.5)  # a second copy would have come by now
        assert [f["text"] for f in b.frames()] == [
            "before the stop", *missed, "after the start"]
        await alice.leave()
