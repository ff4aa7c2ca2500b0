"""Two and three real roomlink instances, each with its own store and API room, one
conversation across them: the host's order on every side."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from fedkit import Instance, agree, digest, star

from rlkit import Room, export, running


async def test_both_ways_one_order_equal_digests(tmp_path: Path) -> None:
    host, guest = Instance("agency", tmp_path / "agency"), Instance("acme", tmp_path / "acme")
    star(host, [guest])
    async with running(host.path, host.ports) as hd, running(guest.path, guest.ports) as gd, \
            aiohttp.ClientSession() as http:
        h, g = Room(http, host.api_port, "lobby"), Room(http, guest.api_port, "lobby")
        async with h.stream() as hs, g.stream() as gs:
            first = await h.post("hello from the agency", "alice")
            await gs.wait_for(1)  # bob answers what he has seen
            answer = await g.post("hello back from **acme**", "bob", reply_to=first["id"])
            await hs.wait_for(1)
            assert hs.frames[0]["id"] == answer["id"]
            assert hs.frames[0]["author"] == {"name": "bob", "party": "acme", "platform": "api"}
            assert hs.frames[0]["reply_to"] == first["id"]
            assert gs.frames[0]["id"] == first["id"]
            assert gs.frames[0]["author"] == {"name": "alice", "party": "agency",
                                              "platform": "api"}
            await g.edit(answer["id"], "hello back from acme, edited", "bob")
            await h.delete(first["id"], "alice")
            await hs.wait_for(2)
            await gs.wait_for(2)
            assert hs.frames[1]["kind"] == "edit" and hs.frames[1]["target"] == answer["id"]
            assert gs.frames[1]["kind"] == "delete" and gs.frames[1]["target"] == first["id"]
            # a stream of messages from both sides at once
            for i in range(20):
                await asyncio.gather(h.post(f"agency {i}", "alice"), g.post(f"acme {i}", "bob"))
            await hs.wait_for(22)
            await gs.wait_for(22)
        await agree(host, guest)
        assert hd.terminate() == 0 and gd.terminate() == 0
    host_record, guest_record = export(host.path, "agency"), export(guest.path, "acme")
    assert len(host_record) == 44
    assert host_record == guest_record
    assert digest(host) == digest(guest)


async def test_a_star_two_guests_on_one_host_one_order(tmp_path: Path) -> None:
    host = Instance("agency", tmp_path / "agency")
    guests = [Instance("acme", tmp_path / "acme"), Instance("contractor", tmp_path / "contractor")]
    star(host, guests)
    everyone = [host, *guests]
    async with running(host.path, host.ports) as hd, \
            running(guests[0].path, guests[0].ports) as ad, \
            running(guests[1].path, guests[1].ports) as cd, aiohttp.ClientSession() as http:
        rooms = {i.name: Room(http, i.api_port, "lobby") for i in everyone}
        streams = {name: room.stream() for name, room in rooms.items()}
        for s in streams.values():
            await s.__aenter__()
        said: dict[str, list[str]] = {name: [] for name in rooms}

        async def talk(name: str) -> None:
            for i in range(10):
                said[name].append((await rooms[name].post(f"{name} {i}", name))["id"])

        await asyncio.gather(*(talk(name) for name in rooms))
        for name, stream in streams.items():
            frames = await stream.wait_for(20)
            for other in rooms:
                got = [f["id"] for f in frames if f["author"]["party"] == other]
                assert got == ([] if other == name else said[other])
            await stream.__aexit__(None, None, None)
        await agree(*everyone)
        for daemon in (hd, ad, cd):
            assert daemon.terminate() == 0
    records = [export(i.path, i.name) for i in everyone]
    assert len(records[0]) == 30 and records[0] == records[1] == records[2]
    assert digest(host) == digest(guests[0]) == digest(guests[1])


def _self_signed(folder: Path) -> tuple[Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agency.example")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path / "tls")
    host, guest = Instance("agency", tmp_path / "agency"), Instance("acme", tmp_path / "acme")
    star(host, [guest], tls={"cert": str(cert), "key": str(key)}, ca=str(cert))
    assert guest.config["connectors"]["to-agency"]["url"].startswith("wss://")
    async with running(host.path, host.ports) as hd, running(guest.path, guest.ports) as gd, \
            aiohttp.ClientSession() as http:
        h, g = Room(http, host.api_port, "lobby"), Room(http, guest.api_port, "lobby")
        async with h.stream() as hs, g.stream() as gs:
            await h.post("over TLS", "alice")
            await g.post("over TLS too", "bob")
            assert [f["text"] for f in await hs.wait_for(1)] == ["over TLS too"]
            assert [f["text"] for f in await gs.wait_for(1)] == ["over TLS"]
        await agree(host, guest)
        assert hd.terminate() == 0 and gd.terminate() == 0
    assert digest(host) == digest(guest)
