"""cman/wire.py: sealed packets (HMAC-SHA256 under the cluster key), the replay guard, the key file, cluster ids."""
from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from cluster_conf.document import ClusterConf
from cluster_conf.model import view
from cman import wire
from cman.wire import Packet, ReplayGuard, WireError, seal, unseal

KEY = bytes(range(64))
CID = 4242


def packet(seq: int = 1, *, sender: int = 2, incarnation: int = 100, body: dict | None = None) -> Packet:
    return Packet(CID, sender, incarnation, seq, "hb", {"gen": 3001, "members": [1, 2, 3]} if body is None else body)


def code_of(data: bytes, *, key: bytes = KEY, cluster_id: int = CID) -> str:
    with pytest.raises(WireError) as caught:
        unseal(key, data, cluster_id)
    assert "\n" not in caught.value.message
    return caught.value.code


def test_round_trip() -> None:
    sent = packet(7, body={"acks": {"1": 5}, "state": "Cluster-Member", "hears": [1, 3]})
    data = seal(KEY, sent)
    assert data.startswith(b"RHCM\x01")
    assert unseal(KEY, data, CID) == sent


def test_forged_corrupt_and_foreign_packets_are_rejected_with_their_code() -> None:
    data = seal(KEY, packet())
    forged = data[:-32] + bytes(32)
    flipped = bytearray(data)
    flipped[40] ^= 0x01
    assert code_of(forged) == "hmac"
    assert code_of(bytes(flipped)) == "hmac"
    assert code_of(data, key=bytes(64)) == "hmac"  # another cluster's key
    assert code_of(seal(KEY, Packet(CID + 1, 2, 100, 1, "hb", {}))) == "cluster"
    assert code_of(data[:20]) == "short"
    assert code_of(b"") == "short"
    assert code_of(b"X" * (wire.MAX_PACKET + 1)) == "oversize"
    assert code_of(os.urandom(200).replace(b"RHCM", b"xxxx")) == "magic"
    assert code_of(b"RHCM\x02" + data[5:]) == "version"


def test_a_well_signed_packet_with_an_unreadable_body_is_a_format_error() -> None:
    import hashlib
    import hmac

    signed = wire._HEADER.pack(wire.MAGIC, 1, CID, 2, 100, 1, 2) + b"hb" + b"[1,2]"
    assert code_of(signed + hmac.new(KEY, signed, hashlib.sha256).digest()) == "format"
    signed = wire._HEADER.pack(wire.MAGIC, 1, CID, 2, 100, 1, 2) + b"hb" + b"{nope"
    assert code_of(signed + hmac.new(KEY, signed, hashlib.sha256).digest()) == "format"


def test_seal_refuses_what_cannot_be_sent() -> None:
    with pytest.raises(WireError) as caught:
        seal(KEY, packet(body={"blob": "x" * wire.MAX_PACKET}))
    assert caught.value.code == "oversize"
    with pytest.raises(WireError) as caught:
        seal(KEY, Packet(CID, 2, 1, 1, "", {}))
    assert caught.value.code == "format"
    with pytest.raises(WireError) as caught:
        seal(KEY, Packet(CID, 2, 1, -1, "hb", {}))
    assert caught.value.code == "format"


def test_replay_of_the_same_packet_is_refused() -> None:
    guard = ReplayGuard()
    first = unseal(KEY, seal(KEY, packet(5)), CID)
    assert guard.admit(first.sender, first.incarnation, first.seq) is None
    again = unseal(KEY, seal(KEY, packet(5)), CID)
    assert guard.admit(again.sender, again.incarnation, again.seq) == "replay"


def test_an_old_incarnation_is_stale_after_a_newer_one() -> None:
    guard = ReplayGuard()
    assert guard.admit(2, 100, 50) is None
    assert guard.admit(2, 200, 1) is None  # restarted: the window resets, seq 1 is new
    assert guard.admit(2, 100, 51) == "stale_incarnation"
    assert guard.admit(2, 200, 2) is None
    assert guard.incarnation(2) == 200
    guard.forget(2)
    assert guard.incarnation(2) is None
    assert guard.admit(2, 100, 51) is None  # forgotten: starts afresh


def test_out_of_order_within_the_window_is_accepted_once() -> None:
    guard = ReplayGuard()
    assert guard.admit(3, 1, 100) is None
    assert guard.admit(3, 1, 98) is None  # late, unseen
    assert guard.admit(3, 1, 98) == "replay"
    assert guard.admit(3, 1, 100 - 63) is None  # the oldest seq still in the window
    assert guard.admit(3, 1, 100 - 64) == "replay"  # older than the window
    assert guard.admit(3, 1, 99) is None
    assert guard.admit(3, 1, 1000) is None  # a jump clears the window
    assert guard.admit(3, 1, 999) is None
    assert guard.admit(3, 1, 100) == "replay"
    assert guard.admit(4, 1, 100) is None  # senders are independent


def test_real_udp_only_the_good_packet_is_admitted() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(2.0)
        target = receiver.getsockname()
        good = seal(KEY, packet(1))
        forged = seal(b"k" * 64, packet(2))
        other_cluster = seal(KEY, Packet(CID + 7, 2, 100, 3, "hb", {}))
        for datagram in (good, forged, good, other_cluster, b"garbage"):
            sender.sendto(datagram, target)
        guard = ReplayGuard()
        admitted, refused = [], []
        for _ in range(5):
            data, _address = receiver.recvfrom(65536)
            try:
                received = unseal(KEY, data, CID)
            except WireError as exc:
                refused.append(exc.code)
                continue
            reason = guard.admit(received.sender, received.incarnation, received.seq)
            (admitted if reason is None else refused).append(reason or received)
    finally:
        receiver.close()
        sender.close()
    assert admitted == [packet(1)]
    assert sorted(refused) == ["cluster", "hmac", "replay", "short"]


def test_key_file_is_created_0600_and_loaded(tmp_path: Path) -> None:
    key = wire.new_key()
    assert len(key) == 64 and key != wire.new_key()
    path = wire.write_key(tmp_path, key)
    assert path == tmp_path / "etc/cluster/authkey"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert wire.load_key(tmp_path) == key
    assert not list(path.parent.glob("*.old")) and not list(path.parent.glob(".*tmp"))
    replacement = wire.new_key()
    wire.write_key(tmp_path, replacement)
    assert wire.load_key(tmp_path) == replacement
    assert not list(path.parent.glob("authkey.old"))


def test_missing_or_short_key_is_one_clear_line_without_the_key(tmp_path: Path) -> None:
    with pytest.raises(WireError) as caught:
        wire.load_key(tmp_path)
    assert caught.value.code == "no_key"
    assert str(tmp_path / "etc/cluster/authkey") in caught.value.message
    short = b"secret-bytes-0123"
    (tmp_path / "etc/cluster").mkdir(parents=True)
    (tmp_path / "etc/cluster/authkey").write_bytes(short)
    with pytest.raises(WireError) as caught:
        wire.load_key(tmp_path)
    assert caught.value.code == "no_key" and "too short (17 bytes" in caught.value.message
    assert "secret" not in caught.value.message and "\n" not in caught.value.message
    with pytest.raises(ValueError):
        wire.write_key(tmp_path, short)


def test_unreadable_key(tmp_path: Path) -> None:
    # A directory where the key should be: unreadable for root too (a mode of 0 would not stop root).
    (tmp_path / wire.AUTHKEY).mkdir(parents=True)
    with pytest.raises(WireError) as caught:
        wire.load_key(tmp_path)
    assert caught.value.code == "no_key" and "cannot read the cluster key" in caught.value.message
    assert "Is a directory" in caught.value.message


def test_cluster_id_from_the_name_or_the_config() -> None:
    derived = wire.cluster_id_for("labcluster")
    assert derived == wire.cluster_id_for("labcluster")
    assert 0 < derived <= 0xFFFF
    assert len({wire.cluster_id_for(f"c{i}") for i in range(50)}) > 45  # names spread over the id space

    def conf(cman: str) -> ClusterConf:
        return ClusterConf.from_string(f'<cluster name="labcluster" config_version="1">{cman}<clusternodes/>'
                                       "</cluster>")

    assert wire.cluster_id(view(conf(""))) == derived
    assert wire.cluster_id(view(conf('<cman cluster_id="4242"/>'))) == 4242
    assert wire.cluster_id(view(conf('<cman cluster_id="junk"/>'))) == derived
