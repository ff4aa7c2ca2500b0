"""``history compare --against``: two real linked instances, each with its own config and
store, compare their records of the conversation through the file one hands the other."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from fedkit import Instance, agree, digest, star

from rlkit import Room, run_cli, running


def _export(inst: Instance, dest: Path) -> Path:
    done = run_cli("history", "export", "-c", str(inst.path), "--party", inst.name,
                   "--pipe", "project", "--format", "jsonl", "-o", str(dest))
    assert done.returncode == 0, done.stderr
    return dest


def _compare(inst: Instance, against: Path, code: int) -> str:
    done = run_cli("history", "compare", "-c", str(inst.path), "--party", inst.name,
                   "--pipe", "project", "--against", str(against))
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    return done.stdout.strip()


async def test_each_instance_compares_its_record_with_the_other_ones_export(
    tmp_path: Path,
) -> None:
    host, guest = Instance("agency", tmp_path / "agency"), Instance("acme", tmp_path / "acme")
    star(host, [guest])
    async with running(host.path, host.ports) as hd, running(guest.path, guest.ports) as gd, \
            aiohttp.ClientSession() as http:
        h, g = Room(http, host.api_port, "lobby"), Room(http, guest.api_port, "lobby")
        async with h.stream() as hs, g.stream() as gs:
            first = await h.post("hello from the agency", "alice")
            await gs.wait_for(1)
            answer = await g.post("hello back from acme", "bob", reply_to=first["id"])
            await hs.wait_for(1)
            await g.edit(answer["id"], "hello back from acme, edited", "bob")
            for i in range(5):
                await asyncio.gather(h.post(f"agency {i}", "alice"), g.post(f"acme {i}", "bob"))
            await hs.wait_for(7)
            await gs.wait_for(6)  # its own edit is not echoed to its own room
        await agree(host, guest)
        assert hd.terminate() == 0 and gd.terminate() == 0
    acme_file = _export(guest, tmp_path / "acme.jsonl")
    agency_file = _export(host, tmp_path / "agency.jsonl")
    line = digest(host)
    assert line == digest(guest)
    count, head = line.split(" count=")[1].split()[0], line.split(" head=")[1]
    said = _compare(host, acme_file, 0)
    assert said == _compare(guest, agency_file, 0)
    assert said.startswith(f"project: agree up to {count} messages") and head in said
    # acme's file, one text changed on the way: the agency sees where
    records = [json.loads(x) for x in acme_file.read_text().splitlines()]
    records[1]["text"] = "hello back from acme, and we agree to pay double"
    acme_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert _compare(host, acme_file, 1) == (
        f"project: differ at position 2: different content of message {answer['id']} "
        "(text differs)")
