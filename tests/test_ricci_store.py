"""The versioned store: validation, version rules, history, two-phase staging, and kill -9 during writes."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cluster_conf import ClusterConf
from ricci_agent.store import (
    INVALID,
    LOCAL_EDIT,
    NOT_GREATER,
    RACE_LOST,
    RACE_TEXT,
    SAME_VERSION,
    ConfigStore,
    Staging,
    StoreRefusal,
    check_candidate,
    content_hash,
    validated_elsewhere,
    validator_version,
)
from tests.ricci_fixtures import conf_xml

NODES = ["node1", "node2"]


def cand(version: int, extra: str = ""):  # type: ignore[no-untyped-def]
    return check_candidate(conf_xml(NODES, version, extra=extra).encode())


@pytest.fixture
def store(tmp_path: Path) -> ConfigStore:
    s = ConfigStore(tmp_path)
    s.install(cand(1), "test")
    return s


def test_greater_version_installs_keeps_old_and_records_history(store: ConfigStore) -> None:
    assert store.install(cand(2), "alice") == "updated"
    assert ClusterConf.load(store.conf_path).config_version == 2
    assert ClusterConf.load(f"{store.conf_path}.old").config_version == 1
    versions = store.versions()
    assert [(e.version, e.author) for e in versions] == [(1, "test"), (2, "alice")]
    entry, data = store.get_version(1)
    assert data == conf_xml(NODES, 1).encode() and entry.hash == versions[0].hash


def test_same_bytes_is_idempotent_and_other_content_or_older_is_refused(store: ConfigStore) -> None:
    store.install(cand(2), "a")
    assert store.install(cand(2), "a") == "already"
    with pytest.raises(StoreRefusal) as same:
        store.install(cand(2, "<!-- other -->"), "b")
    assert same.value.code == SAME_VERSION
    with pytest.raises(StoreRefusal) as older:
        store.install(cand(1), "c")
    assert older.value.code == NOT_GREATER
    assert "does not have greater version number" in older.value.message
    assert older.value.details == {"current": 2, "proposed": 1}
    assert ClusterConf.load(store.conf_path).config_version == 2


def test_invalid_config_is_refused_with_reports(store: ConfigStore) -> None:
    bad = conf_xml(NODES, 5).replace('nodeid="2"', 'nodeid="1"').encode()
    with pytest.raises(StoreRefusal) as exc:
        check_candidate(bad)
    assert exc.value.code == INVALID
    assert any(r["severity"] == "error" for r in exc.value.details["reports"])  # type: ignore[union-attr]
    with pytest.raises(StoreRefusal) as broken:
        check_candidate(b"<cluster name='x' config_version='2'>")
    assert broken.value.code == INVALID and "line" in str(broken.value.details["reports"][0])  # type: ignore[index]


def test_tie_break_takes_the_smaller_hash_only(store: ConfigStore) -> None:
    a, b = cand(3, "<!-- a -->"), cand(3, "<!-- b -->")
    small, big = sorted([a, b], key=lambda c: c.hash)
    store.install(big, "x")
    assert store.install(small, "catch-up", tie_break=True) == "updated"
    with pytest.raises(StoreRefusal):
        store.install(big, "catch-up", tie_break=True)
    assert store.current().hash == small.hash  # type: ignore[union-attr]


def test_two_phase_race_has_exactly_one_winner(store: ConfigStore) -> None:
    staging = Staging(store)
    a, b = cand(2, "<!-- a -->"), cand(2, "<!-- b -->")
    small, big = sorted([a, b], key=lambda c: c.hash)
    assert staging.stage(big, "big") == "staged"
    assert staging.stage(small, "small") == "staged"  # the smaller hash may still stage
    results: dict[str, object] = {}

    def commit_big() -> None:
        try:
            results["big"] = staging.commit(big.version, big.hash)
        except StoreRefusal as exc:
            results["big"] = exc

    t = threading.Thread(target=commit_big)
    t.start()  # waits: a smaller-hash copy of the same version is staged
    time.sleep(0.2)
    assert "big" not in results
    assert staging.commit(small.version, small.hash) == "updated"
    t.join(10)
    lost = results["big"]
    assert isinstance(lost, StoreRefusal) and lost.code == RACE_LOST and lost.message == RACE_TEXT
    assert store.current().hash == small.hash  # type: ignore[union-attr]
    with pytest.raises(StoreRefusal) as late:  # a third stage of that version with other content loses too
        staging.stage(cand(2, "<!-- c -->"), "late")
    assert late.value.code == RACE_LOST


def test_stage_refused_while_a_smaller_hash_is_staged_and_abort_releases(store: ConfigStore) -> None:
    staging = Staging(store)
    small, big = sorted([cand(2, "<!-- a -->"), cand(2, "<!-- b -->")], key=lambda c: c.hash)
    staging.stage(small, "small")
    with pytest.raises(StoreRefusal) as exc:
        staging.stage(big, "big")
    assert exc.value.code == RACE_LOST
    staging.abort(small.version, small.hash)
    assert staging.stage(big, "big") == "staged"
    assert staging.commit(big.version, big.hash) == "updated"


def test_recover_rolls_forward_an_interrupted_install(tmp_path: Path) -> None:
    s = ConfigStore(tmp_path)
    s.install(cand(1), "t")
    s._record(cand(2).data, 2, cand(2).hash, "t")  # crash after the history record, before cluster.conf
    assert s.current().version == 1  # type: ignore[union-attr]
    assert s.recover() is not None
    assert s.current().version == 2  # type: ignore[union-attr]


WRITER = """
import sys
from ricci_agent.store import ConfigStore, check_candidate
from tests.ricci_fixtures import conf_xml
store = ConfigStore(sys.argv[1])
start = store.current().version
for v in range(start + 1, start + 400):  # bounded: the parent kills it long before
    store.install(check_candidate(conf_xml(["node1", "node2"], v, extra="<!--" + "x" * 20000 + "-->").encode()), "w")
"""


def test_kill_9_during_installs_leaves_old_or_new_whole(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    store.install(cand(1), "t")
    rng = random.Random(4321)
    seen = set()
    for _ in range(15):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=Path(__file__).parents[1])
        time.sleep(rng.uniform(0.3, 0.8))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
        data = store.conf_path.read_bytes()
        conf = ClusterConf.from_bytes(data)  # raises on a torn file
        version = conf.config_version
        assert version is not None
        # the live file is exactly one of the versions the writer produced, byte for byte
        assert data == (cand(1).data if version == 1 else
                        conf_xml(NODES, version, extra="<!--" + "x" * 20000 + "-->").encode())
        store.recover()  # as the agent does at start: never goes backwards, leaves a whole file
        assert (store.current().version or 0) >= version  # type: ignore[union-attr]
        seen.add(store.current().version)  # type: ignore[union-attr]
        for entry in store.versions()[-3:]:  # the latest recorded copies are whole
            assert store.get_version(entry.version)[1]
    assert max(seen) > 2, "the writer never got to install: the test exercised nothing"


def test_recover_deletes_temporary_files_a_crash_left_behind(store: ConfigStore) -> None:
    conf_dir = store.conf_path.parent
    history = store.root / "var/lib/cluster/history"
    leftovers = [conf_dir / ".cluster.conf.abc123.tmp", conf_dir / ".cluster.conf.abc123.tmp.old",
                 history / ".2-0123456789abcdef.conf.xyz.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    keep = conf_dir / "notes.tmp"  # not atomic_write's name: not ours to delete
    keep.write_text("mine")
    store.recover()
    assert not any(p.exists() for p in leftovers)
    assert keep.exists() and store.current().version == 1  # type: ignore[union-attr]


def test_commit_waits_as_long_as_it_is_told_for_a_smaller_rival(store: ConfigStore) -> None:
    staging = Staging(store, commit_wait=0.5)
    small, big = sorted([cand(2, "<!-- a -->"), cand(2, "<!-- b -->")], key=lambda c: c.hash)
    staging.stage(big, "big")
    staging.stage(small, "small")  # never committed: the big copy's commit gives up after its wait
    started = time.monotonic()
    with pytest.raises(StoreRefusal) as exc:
        staging.commit(big.version, big.hash)
    assert exc.value.code == RACE_LOST and 0.4 < time.monotonic() - started < 5


def test_a_copy_validated_elsewhere_is_checked_for_hash_parse_and_cluster_only() -> None:
    # A copy with a semantic error (two nodes with one nodeid): the full validation refuses it...
    bad = conf_xml(NODES, 2).replace('nodeid="2"', 'nodeid="1"').encode()
    with pytest.raises(StoreRefusal) as full:
        check_candidate(bad)
    assert full.value.code == INVALID
    # ...the shortcut trusts the sender's validation (same validator), so only what it checks can refuse it.
    good = conf_xml(NODES, 2).encode()
    taken = validated_elsewhere(good, content_hash(good), "labcl")
    assert taken is not None and (taken.version, taken.cluster_name, taken.warnings) == (2, "labcl", ())
    with pytest.raises(StoreRefusal) as damaged:
        validated_elsewhere(good, content_hash(bad), "labcl")
    assert damaged.value.code == INVALID and "do not match the hash" in damaged.value.message
    with pytest.raises(StoreRefusal) as unparsable:
        validated_elsewhere(b"<cluster", content_hash(b"<cluster"), "labcl")
    assert unparsable.value.code == INVALID
    assert validated_elsewhere(good, content_hash(good), "othercl") is None  # another cluster: validate in full
    assert validator_version() == validator_version() and validator_version().startswith("cluster_conf-")


def test_staging_the_live_file_records_it_in_history(store: ConfigStore) -> None:
    hand_edit = conf_xml(NODES, 2, extra="<!-- by hand -->").encode()
    store.conf_path.write_bytes(hand_edit)  # an admin edited cluster.conf in place (then cman_tool version -r)
    assert [e.version for e in store.versions()] == [1]
    assert Staging(store).stage(check_candidate(hand_edit), "admin") == "already"
    assert [(e.version, e.author) for e in store.versions()] == [(1, "test"), (2, "admin")]
    assert store.get_version(2)[1] == hand_edit


def test_install_primes_the_live_copy_without_reading_it_again(store: ConfigStore,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    new = cand(2)
    store.install(new, "a")
    monkeypatch.setattr(ClusterConf, "from_bytes", None)  # current() must not parse the file it just wrote
    live = store.current()
    assert live is not None and (live.version, live.hash, live.data) == (2, new.hash, new.data)
    assert store.installed is new


# -- a local edit of the live file is not accepted until it is pushed -------------------------------------------
def hand_edit(store: ConfigStore, version: int) -> bytes:
    """An admin edits cluster.conf in place (RHEL6: edit, raise config_version), without telling the agent."""
    data = conf_xml(NODES, version, extra="<!-- by hand -->").encode()
    store.conf_path.write_bytes(data)
    return data


def test_a_local_edit_is_reported_beside_the_accepted_copy(store: ConfigStore) -> None:
    assert store.local_edit() is None
    data = hand_edit(store, 2)
    accepted, edit = store.accepted(), store.local_edit()
    assert accepted is not None and (accepted.version, accepted.data) == (1, cand(1).data)
    assert edit is not None and (edit.version, edit.hash) == (2, content_hash(data))
    store.conf_path.unlink()
    missing = store.local_edit()
    assert missing is not None and (missing.version, missing.hash) == (0, "")


def test_a_copy_of_the_local_edits_version_with_other_content_is_refused(store: ConfigStore) -> None:
    hand_edit(store, 2)
    other = cand(2, "<!-- pushed -->")
    for attempt in (lambda: store.install(other, "peer"), lambda: store.install(other, "peer", tie_break=True),
                    lambda: Staging(store).stage(other, "peer")):
        with pytest.raises(StoreRefusal) as exc:
            attempt()
        assert exc.value.code == LOCAL_EDIT and "edited locally" in exc.value.message
    assert [e.version for e in store.versions()] == [1]


def test_a_newer_copy_replaces_a_local_edit_which_is_kept_as_old_and_logged(
        store: ConfigStore, caplog: pytest.LogCaptureFixture) -> None:
    edited = hand_edit(store, 2)
    with caplog.at_level("WARNING", logger="ricci.store"):
        assert store.install(cand(3), "catch-up from node2") == "updated"
    assert store.conf_path.with_name("cluster.conf.old").read_bytes() == edited
    assert store.accepted().version == 3 and store.local_edit() is None  # type: ignore[union-attr]
    assert "edited locally (config_version 2, not distributed) was replaced by config_version 3" in caplog.text


def test_recover_adopts_the_first_config_but_not_a_later_hand_edit(tmp_path: Path) -> None:
    fresh = ConfigStore(tmp_path / "fresh")
    fresh.conf_path.parent.mkdir(parents=True)
    fresh.conf_path.write_bytes(cand(1).data)
    fresh.recover()
    assert [(e.version, e.author) for e in fresh.versions()] == [(1, "found on disk")]
    hand_edit(fresh, 2)  # edited while the agent was down: still a local edit when it starts again
    fresh.recover()
    assert [e.version for e in fresh.versions()] == [1] and fresh.local_edit().version == 2  # type: ignore[union-attr]


def test_trust_files_get_their_modes_and_authorize_is_idempotent(tmp_path):
    """authorized_keys 0600 (who may log in is nobody else's business), known_hosts and the public key 0644;
    written through the one atomic writer, so no temporary file is left beside them."""
    import stat

    from ricci_agent import keys

    line = keys.ensure_client_key(tmp_path)
    keys.authorize(tmp_path, line)
    keys.authorize(tmp_path, line)
    keys.ensure_host_key(tmp_path)
    keys.pin_host_key(tmp_path, "127.0.0.11", 11111, keys.host_public_key(tmp_path))
    ricci = tmp_path / "etc" / "ricci"
    assert stat.S_IMODE((ricci / "authorized_keys").stat().st_mode) == 0o600
    assert stat.S_IMODE((ricci / "known_hosts").stat().st_mode) == 0o644
    assert stat.S_IMODE((ricci / "id_ed25519.pub").stat().st_mode) == 0o644
    assert (ricci / "authorized_keys").read_text().count(line.split()[1]) == 1
    assert stat.S_IMODE((tmp_path / keys.HOST_KEY).stat().st_mode) == 0o600
    assert not [p.name for p in ricci.iterdir() if p.name.startswith(".")]  # no temporary file left
