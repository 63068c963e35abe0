"""Heartbeat membership and view agreement, as a pure state machine (no sockets, no clock reads).

The daemon feeds it authenticated packets (`receive`) and clock ticks (`tick`), both with the current monotonic
time, and carries out what it returns: `Send` (seal and send to those nodes), `PersistEpoch` (write it durably
*before* the sends that follow), `ViewChange` and `Evicted` (tell quorum, fencing and the log). The same inputs
always give the same outputs, so every rule here is tested with a simulated clock (tests/test_cman_membership.py).

The protocol, and what it guarantees under loss, partitions, pauses and restarts, is in docs/membership.md. In
short:

- every node sends a heartbeat (HB) every `token/10` to every configured node, carrying its installed view, the
  nodes it hears, and for each node the last sequence number it received from it (acks);
- a node is *alive* while heard within `token`; *mutual* when alive and its last HB says it hears us;
- the coordinator (lowest nodeid among the mutual nodes and itself) proposes a clique of mutually connected
  nodes under a generation unique to it (`epoch * stride + nodeid`); members accept a generation above their
  promise from the coordinator they would pick themselves; all accepts → COMMIT (and the HBs repeat it);
- a view is *confirmed*, and the node may act on it, only while a quorum of its members acked a heartbeat it
  sent within the last token, from the same generation: a paused node loses that lease and regains it only by
  fresh round trips;
- a node dropped from a view that is heard again with the same incarnation is *disallowed* until it restarts.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Message kinds on the wire.
HB = "hb"
PROPOSE = "propose"
ACCEPT = "accept"
NACK = "nack"
COMMIT = "commit"
LEAVE = "leave"
EXPECTED = "expected"
KINDS = frozenset({HB, PROPOSE, ACCEPT, NACK, COMMIT, LEAVE, EXPECTED})

# Membership states (cman_tool status "Membership state").
JOINING = "Joining"
MEMBER = "Cluster-Member"
LEAVING = "Leaving"

DEFAULT_TOKEN_MS = 10000  # cman's default <totem token>; the lab uses 1000


@dataclass(frozen=True, slots=True)
class Settings:
    """What the configuration says about membership, for one node."""

    nodeid: int
    node_votes: Mapping[int, int]  # every configured nodeid → votes
    token: float = DEFAULT_TOKEN_MS / 1000  # seconds without a heartbeat before a node is declared dead
    config_version: int = 0
    expected: int = 0  # the expected votes this node advertises
    join_wait: float | None = None  # listen this long before a first proposal (default: token/2)
    consensus: float | None = None  # wait this long for accepts (default: max(token/5, 0.2 s))

    @property
    def interval(self) -> float:
        return max(self.token / 10, 0.02)

    @property
    def join_delay(self) -> float:
        return self.token / 2 if self.join_wait is None else self.join_wait

    @property
    def consensus_timeout(self) -> float:
        return max(self.token / 5, 0.2) if self.consensus is None else self.consensus

    @property
    def stride(self) -> int:
        return generation_stride(self.node_votes)


def generation_stride(nodeids: Iterable[int]) -> int:
    """Generations are `epoch * stride + proposer nodeid`, so two proposers never pick the same one: 1000, or the
    next power of ten above the largest configured nodeid."""
    largest = max(nodeids, default=0)
    stride = 1000
    while stride <= largest:
        stride *= 10
    return stride


def epoch_of(generation: int, stride: int) -> int:
    return generation // stride


@dataclass(frozen=True, slots=True)
class View:
    generation: int
    members: frozenset[int]
    coordinator: int

    def to_json(self) -> dict:
        return {"generation": self.generation, "members": sorted(self.members), "coordinator": self.coordinator}


NO_VIEW = View(0, frozenset(), 0)


@dataclass(frozen=True, slots=True)
class Send:
    dests: tuple[int, ...]
    kind: str
    body: dict
    seq: int


@dataclass(frozen=True, slots=True)
class PersistEpoch:
    epoch: int


@dataclass(frozen=True, slots=True)
class ViewChange:
    previous: View
    view: View
    lost: frozenset[int]  # members of the previous view not in the new one
    joined: frozenset[int]
    left_cleanly: frozenset[int]  # lost members that said LEAVE
    removed: frozenset[int]  # lost members that said LEAVE with `remove` (quorum goes down)
    restarted: frozenset[int] = frozenset()  # members that came back with a new incarnation (in lost and joined)


@dataclass(frozen=True, slots=True)
class Evicted:
    """A newer view leaves this node out: it must stop acting at once (and restart to rejoin)."""

    generation: int
    by: int


@dataclass(frozen=True, slots=True)
class ExpectedSet:
    votes: int
    by: int


@dataclass(frozen=True, slots=True)
class Log:
    level: str
    text: str


Effect = Send | PersistEpoch | ViewChange | Evicted | ExpectedSet | Log


@dataclass(slots=True)
class Peer:
    """What this node knows of another node, from its last packets."""

    nodeid: int
    incarnation: int = 0
    last_heard: float | None = None
    generation: int = 0
    members: frozenset[int] = frozenset()
    coordinator: int = 0
    hears: frozenset[int] = frozenset()
    acked: int = -1  # the last of our sequence numbers it reported receiving
    last_seq: int = -1  # the last of its sequence numbers we received (our heartbeats ack it)
    hb_seq: int = -1  # the sequence number of the heartbeat its state comes from
    config_version: int = 0
    expected: int = 0
    state: str = JOINING
    extra: dict = field(default_factory=dict)  # what its daemon adds to heartbeats (the fencer's fence states)
    left: bool = False  # it said LEAVE (this incarnation)
    remove: bool = False


@dataclass(slots=True)
class Proposal:
    generation: int
    members: frozenset[int]
    started: float  # this attempt
    round_started: float  # the first attempt of this change
    accepted: set[int] = field(default_factory=set)
    nacked: set[int] = field(default_factory=set)
    last_sent: float = 0.0
    attempt: int = 0  # refused attempts before this one in the same round


class _Malformed(Exception):
    pass


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Malformed
    return value


def _ints(value: object) -> list[int]:
    if not isinstance(value, list):
        raise _Malformed
    return [_int(v) for v in value]


def parse_body(kind: str, body: object) -> dict | None:
    """The body of a packet of `kind` with every field of the right type (defaults for missing ones), or None
    when a field has the wrong type: a packet is applied whole or not at all."""
    if not isinstance(body, Mapping):
        return None
    try:
        if kind == HB:
            acks = body.get("a", {})
            if not isinstance(acks, Mapping):
                raise _Malformed
            extra = body.get("x", {})
            state = body.get("s", JOINING)
            if not isinstance(extra, dict) or not isinstance(state, str):
                raise _Malformed
            return {"g": _int(body.get("g", 0)), "m": _ints(body.get("m", [])), "c": _int(body.get("c", 0)),
                    "h": _ints(body.get("h", [])), "a": {str(k): _int(v) for k, v in acks.items()},
                    "cv": _int(body.get("cv", 0)), "e": _int(body.get("e", 0)), "s": state, "x": extra}
        if kind in (PROPOSE, COMMIT):
            return {"g": _int(body.get("g", 0)), "m": _ints(body.get("m", []))}
        if kind == ACCEPT:
            return {"g": _int(body.get("g", 0))}
        if kind == NACK:
            reason = body.get("reason", "")
            if not isinstance(reason, str):
                raise _Malformed
            return {"g": _int(body.get("g", 0)), "promised": _int(body.get("promised", 0)), "reason": reason}
        if kind == LEAVE:
            return {"remove": bool(body.get("remove"))}
        if kind == EXPECTED:
            return {"votes": _int(body.get("votes", 0))}
    except _Malformed:
        return None
    return None


class Membership:
    """One node's membership state machine. Not thread-safe: the daemon calls it from its loop only."""

    def __init__(self, settings: Settings, incarnation: int, now: float, *, epoch_floor: int = 0) -> None:
        self.settings = settings
        self.incarnation = incarnation
        self.started = now
        self.view = NO_VIEW
        self.state = JOINING
        self.seq = 0
        self.promised = 0
        self.max_epoch = epoch_floor
        self.peers: dict[int, Peer] = {n: Peer(n) for n in settings.node_votes if n != settings.nodeid}
        self.sent_at: dict[int, float] = {}  # our HB sequence numbers → when sent
        self.next_hb = now
        self.proposal: Proposal | None = None
        self.accepted: tuple[View, float] | None = None  # a proposal we accepted, waiting for its commit
        self.dropped: dict[int, int] = {}  # nodeid → incarnation it had when a view dropped it
        self.disallowed: dict[int, int] = {}  # nodeid → the old incarnation it came back with
        self.evicted_by = 0  # generation of a newer view that left us out (0: none)
        self.expected_override: int | None = None
        self.extra: dict = {}  # the daemon's additions to our heartbeats
        self.conflicts: dict[int, int] = {}  # joiners left out for an older config → the version logged
        self.refusals: dict[int, tuple[float, float]] = {}  # nodeid → (first, last) "not_coordinator" of a streak
        self.expected_until = 0.0  # repeat our EXPECTED until members advertise it, or until this time
        self.last_tick = now
        self.listen_until = now  # after a stall: no view decisions before this time
        self.incarnations: dict[int, int] = {}  # view members (but this node) → incarnation when installed
        self.now = now

    # -- what the node knows ---------------------------------------------------------------------------------
    @property
    def me(self) -> int:
        return self.settings.nodeid

    def alive(self, now: float) -> frozenset[int]:
        """Nodes heard within the token (not disallowed, not gone with LEAVE), this node included."""
        token = self.settings.token
        return frozenset(
            [self.me]
            + [
                p.nodeid
                for p in self.peers.values()
                if p.last_heard is not None and now - p.last_heard <= token and not p.left
                and p.nodeid not in self.disallowed
            ]
        )

    def mutual(self, now: float) -> frozenset[int]:
        """Alive nodes whose last heartbeat says they hear this node (this node included)."""
        return frozenset(n for n in self.alive(now) if n == self.me or self.me in self.peers[n].hears)

    def advertised_expected(self) -> int:
        return self.expected_override if self.expected_override is not None else self.settings.expected

    def member_expected(self) -> dict[int, int]:
        """The expected votes every member of the view advertises (cman uses the highest)."""
        result = {self.me: self.advertised_expected()}
        for m in self.view.members:
            if m != self.me and m in self.peers and self.peers[m].expected:
                result[m] = self.peers[m].expected
        return result

    def superseded(self, now: float) -> int:
        """The generation of a newer view an alive peer holds (0 when none): ours is out of date."""
        newer = [p.generation for p in self.peers.values()
                 if p.last_heard is not None and now - p.last_heard <= self.settings.token
                 and p.generation > self.view.generation and p.nodeid in self.view.members]
        return max(newer, default=0)

    def confirmed(self, now: float, quorum: int, extra_votes: int = 0) -> bool:
        """May this node act on its view now? Only while a quorum of the view's votes (its own included) acked a
        heartbeat it sent within the last token, from the same generation, and no member holds a newer view.
        `extra_votes` are votes proven another way (the quorum disk's, which has its own lease on the disk)."""
        if self.state != MEMBER or self.me not in self.view.members or self.evicted_by:
            return False
        if self.superseded(now):
            return False
        votes = self.settings.node_votes
        total = votes.get(self.me, 1) + extra_votes
        horizon = now - self.settings.token
        for m in self.view.members:
            if m == self.me:
                continue
            peer = self.peers.get(m)
            if peer is None or peer.generation != self.view.generation:
                continue
            sent = self.sent_at.get(peer.acked)
            if sent is not None and sent >= horizon:
                total += votes.get(m, 1)
        return total >= quorum

    def newest_config_seen(self, now: float) -> int:
        alive = self.alive(now)
        return max([self.settings.config_version] + [self.peers[n].config_version for n in alive if n != self.me])

    # -- inputs ----------------------------------------------------------------------------------------------
    def receive(self, sender: int, incarnation: int, seq: int, kind: str, body: Mapping, now: float) -> list[Effect]:
        """An authenticated, non-replayed packet from `sender` (its sequence number `seq`)."""
        self.now = now
        peer = self.peers.get(sender)
        if peer is None or kind not in KINDS:
            return []
        parsed = parse_body(kind, body)
        if parsed is None:  # signed by a member, but not a body this version understands: nothing is applied
            return [Log("warning", f"dropped a malformed {kind} packet from node {sender}")]
        body = parsed
        effects: list[Effect] = []
        if incarnation < peer.incarnation:
            return []  # an old life of the node (the replay guard normally stops these first)
        if incarnation > peer.incarnation:
            if peer.incarnation:
                effects.append(Log("info", f"node {sender} restarted (incarnation {incarnation})"))
            self.peers[sender] = peer = Peer(sender, incarnation)
            self.disallowed.pop(sender, None)
            self.dropped.pop(sender, None)
        if self.dropped.get(sender) == incarnation and sender not in self.disallowed:
            self.disallowed[sender] = incarnation
            effects.append(Log("warning", f"node {sender} came back with existing state (incarnation "
                                          f"{incarnation}); disallowed until it restarts"))
        peer.last_heard = now
        peer.last_seq = max(peer.last_seq, seq)
        if kind == HB:
            if seq <= peer.hb_seq:
                return effects  # an older heartbeat arriving late must not roll the peer's state back
            peer.hb_seq = seq
            self._take_heartbeat(peer, body)
            effects += self._maybe_install_from(peer, now)
        elif kind == PROPOSE:
            effects += self._on_propose(peer, body, now)
        elif kind == ACCEPT:
            effects += self._on_accept(sender, body, now)
        elif kind == NACK:
            self._on_nack(sender, body)
        elif kind == COMMIT:
            effects += self._on_commit(sender, body, now)
        elif kind == LEAVE:
            peer.left, peer.remove = True, bool(body.get("remove"))
            effects.append(Log("info", f"node {sender} is leaving the cluster" + (" (remove)" if peer.remove else "")))
        elif kind == EXPECTED:
            votes = body["votes"]
            if votes > 0 and self.state == MEMBER and sender in self.view.members:
                self.expected_override = votes
                effects.append(ExpectedSet(votes, sender))
        return effects

    def tick(self, now: float) -> list[Effect]:
        """Time passes: heartbeats, failure detection, proposals and their timeouts."""
        self.now = now
        effects: list[Effect] = []
        if self.state == LEAVING:
            return effects
        if now - self.last_tick > self.settings.token / 2:
            # This node did not run for a while (SIGSTOP, a hung VM, starved): everyone looks silent only
            # because we were not listening. Judge nobody until we have listened again for two intervals.
            self.listen_until = now + 2 * self.settings.interval
            effects.append(Log("warning", f"this node was stalled for {now - self.last_tick:.1f} s; "
                                          "listening before judging anyone"))
        self.last_tick = now
        if now >= self.next_hb:
            effects.append(self._heartbeat(now))
            effects += self._repeat_expected(now)
            self.next_hb = now + self.settings.interval
        newer = self.superseded(now)
        if newer and not self.evicted_by:
            holder = next(p for p in self.peers.values() if p.generation == newer)
            if self.me not in holder.members:
                self.evicted_by = newer
                self.state = JOINING
                effects.append(Evicted(newer, holder.nodeid))
                effects.append(Log("warning", f"view {newer} of node {holder.nodeid} leaves this node out; "
                                              "stopping all activity"))
        if not self.evicted_by and now >= self.listen_until:
            effects += self._coordinate(now)
        return effects

    def set_expected(self, votes: int, now: float) -> list[Effect]:
        """`cman_tool expected -e votes`: set here and on every member (repeated each interval, for up to two
        tokens, to members whose heartbeats still advertise another value: one lost packet must not undo it)."""
        self.now = now
        self.expected_override = votes
        self.expected_until = now + 2 * self.settings.token
        return self._repeat_expected(now, force=True)

    def _repeat_expected(self, now: float, force: bool = False) -> list[Effect]:
        votes = self.expected_override
        if votes is None or now > self.expected_until:
            return []
        behind = tuple(sorted(m for m in self.view.members - {self.me}
                              if m in self.peers and (force or self.peers[m].expected != votes)))
        return [self._send(behind, EXPECTED, {"votes": votes})] if behind else []

    def leave(self, remove: bool, now: float) -> list[Effect]:
        """Clean leave: tell every node (twice: UDP may drop one), then stop taking part."""
        self.now = now
        self.state = LEAVING
        dests = tuple(sorted(self.peers))
        return [self._send(dests, LEAVE, {"remove": remove}), self._send(dests, LEAVE, {"remove": remove})]

    def reconfigure(self, settings: Settings) -> None:
        """A new configuration version: new nodes get a record, removed ones are forgotten."""
        self.settings = settings
        for n in settings.node_votes:
            if n != self.me and n not in self.peers:
                self.peers[n] = Peer(n)
        for n in list(self.peers):
            if n not in settings.node_votes:
                del self.peers[n]

    # -- heartbeats ------------------------------------------------------------------------------------------
    def _heartbeat(self, now: float) -> Send:
        body = {
            "g": self.view.generation,
            "m": sorted(self.view.members),
            "c": self.view.coordinator,
            "h": sorted(self.alive(now) - {self.me}),
            "a": {str(p.nodeid): p.last_seq for p in self.peers.values() if p.last_seq >= 0},
            "cv": self.settings.config_version,
            "e": self.advertised_expected(),
            "s": self.state,
        }
        if self.extra:
            body["x"] = self.extra
        send = self._send(tuple(sorted(self.peers)), HB, body, now)
        horizon = now - 2 * self.settings.token
        for seq in [s for s, t in self.sent_at.items() if t < horizon]:
            del self.sent_at[seq]
        return send

    def _take_heartbeat(self, peer: Peer, body: Mapping) -> None:
        peer.generation = int(body.get("g", 0))
        peer.members = frozenset(int(m) for m in body.get("m", ()))
        peer.coordinator = int(body.get("c", 0))
        peer.hears = frozenset(int(h) for h in body.get("h", ()))
        acks = body.get("a", {})
        if isinstance(acks, Mapping):
            peer.acked = int(acks.get(str(self.me), -1))
        peer.config_version = int(body.get("cv", 0))
        peer.expected = int(body.get("e", 0))
        peer.state = str(body.get("s", JOINING))
        extra = body.get("x")
        peer.extra = extra if isinstance(extra, dict) else {}
        self._note_generation(peer.generation)

    def _note_generation(self, generation: int) -> None:
        self.max_epoch = max(self.max_epoch, epoch_of(generation, self.settings.stride))

    def _maybe_install_from(self, peer: Peer, now: float) -> list[Effect]:
        """A heartbeat repeats the coordinator's commit: a peer holding the generation we promised, with us among
        its members, proves it was committed (generations are unique to one proposal), so install it when the
        COMMIT itself was lost."""
        generation = peer.generation
        if (generation and generation == self.promised and generation != self.view.generation
                and self.me in peer.members and peer.coordinator == generation % self.settings.stride):
            return self._install(View(generation, peer.members, peer.coordinator), now)
        return []

    # -- agreement -------------------------------------------------------------------------------------------
    def _restarted_members(self) -> frozenset[int]:
        """View members heard since with a new incarnation: the view must be formed again."""
        return frozenset(m for m, inc in self.incarnations.items()
                         if m in self.peers and self.peers[m].incarnation != inc)

    def _coordinate(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        result = self._coordinate_view(now, effects)
        return effects + result

    def _note_conflicts(self, left_out: frozenset[int], now: float) -> list[Effect]:
        """Log once per joiner and version: "Node N conflict, remote config version id=V, local=W"."""
        logs: list[Effect] = []
        for n in sorted(left_out):
            version = self.peers[n].config_version
            if version < self.settings.config_version and self.conflicts.get(n) != version:
                self.conflicts[n] = version
                logs.append(Log("warning", f"Node {n} conflict, remote config version id={version}, "
                                           f"local={self.settings.config_version}; it joins once it has ours"))
        return logs

    def _coordinate_view(self, now: float, effects: list[Effect]) -> list[Effect]:
        mutual = self.mutual(now)
        if min(mutual) != self.me:
            return self._fallback(now)
        if self.newest_config_seen(now) > self.settings.config_version:
            return []  # pull the newer configuration (the daemon does) before taking the lead
        if self.view.generation == 0 and now - self.started < self.settings.join_delay:
            return []  # listen first: there may be a cluster to join
        desired = self._clique(mutual)
        effects += self._note_conflicts(mutual - desired, now)
        proposal = self.proposal
        settled = self.state == MEMBER and not self._restarted_members()
        if proposal is not None:
            age = now - proposal.started
            answered = proposal.accepted | proposal.nacked
            if proposal.nacked and age >= self.settings.interval * 2 ** min(proposal.attempt, 4):
                # Refused (a member still hears a lower node, or promised higher): ask again under a new
                # generation; members that keep refusing for a whole token are left out.
                if now - proposal.round_started > self.settings.token:
                    desired = desired - (proposal.nacked - proposal.accepted)
                self.proposal = None
                if desired == self.view.members and settled:
                    return []
                # Each refused attempt waits twice as long as the last (at most 16 intervals): a node that
                # follows a lower node for a while is not flooded with proposals, each an fsync'd epoch.
                return self._propose(desired, now, proposal.round_started, proposal.attempt + 1)
            silent = proposal.members - answered
            gone = silent - self.alive(now)  # silent because dead: go on without them at once
            stuck = now - proposal.round_started > 2 * self.settings.token  # alive, yet never answering
            if desired != proposal.members or gone or stuck:
                if stuck:
                    desired = (desired & frozenset(answered)) | {self.me}
                self.proposal = None
                if desired == self.view.members and settled:
                    return []
                return self._propose(desired, now, proposal.round_started)
            # Slow answers are waited for (the same generation, repeated): a round trip above the consensus
            # timeout must not restart the round, or a slow network never agrees.
            return self._repeat_proposal(proposal, now)
        if desired == self.view.members and settled:
            return []
        return self._propose(desired, now, now)

    def _repeat_proposal(self, proposal: Proposal, now: float) -> list[Effect]:
        """UDP loses packets: send the same PROPOSE again every interval to members that have not answered
        (an acceptor answers a repeat of the proposal it accepted with ACCEPT again)."""
        if now - proposal.last_sent < self.settings.interval:
            return []
        silent = tuple(sorted(proposal.members - proposal.accepted - proposal.nacked))
        if not silent:
            return []
        proposal.last_sent = now
        return [self._send(silent, PROPOSE, {"g": proposal.generation, "m": sorted(proposal.members)})]

    def _fallback(self, now: float) -> list[Effect]:
        """A node that hears a lower nodeid waits for it to lead; one left without a view for long proposes its
        own clique (typically just itself: an inquorate view that shows 'Activity blocked')."""
        if self.state == MEMBER and self.me in self.view.members:
            return []
        if now - self.started < self.settings.join_delay + 2 * self.settings.token:
            return []
        if self.accepted is not None and now - self.accepted[1] < 2 * self.settings.token:
            return []
        proposal = self.proposal
        if proposal is not None and now - proposal.started <= self.settings.consensus_timeout:
            return []
        if proposal is not None:
            members = frozenset(proposal.accepted) | {self.me}
            self.proposal = None
            return self._propose(members, now, proposal.round_started)
        return self._propose(self._clique(self.mutual(now)), now, now)

    def _clique(self, candidates: frozenset[int]) -> frozenset[int]:
        """Mutually connected candidates, greedily in nodeid order from this node; joiners with an older config
        and nodes leaving are left out."""
        def hears(a: int, b: int) -> bool:
            return b in candidates if a == self.me else (b in self.peers[a].hears)

        chosen = [self.me]
        # Members of the current view first, joiners after: a newcomer that has not been heard by everyone yet
        # must wait for the next round, never push out members that simply have not heard it yet.
        ordered = sorted(candidates - {self.me}, key=lambda n: (n not in self.view.members, n))
        for n in ordered:
            peer = self.peers[n]
            if peer.left or peer.state == LEAVING:
                continue
            if self._refusing(n):
                continue  # it keeps following a lower node we do not hear: asking it again would only churn
            if n not in self.view.members and peer.config_version < self.settings.config_version:
                continue  # "Node n conflict, remote config version": it pulls the newer one first
            if all(hears(n, c) and hears(c, n) for c in chosen):
                chosen.append(n)
        return frozenset(chosen)

    def _propose(self, members: frozenset[int], now: float, round_started: float, attempt: int = 0) -> list[Effect]:
        epoch = self.max_epoch + 1
        generation = epoch * self.settings.stride + self.me
        self.max_epoch = epoch
        self.promised = generation
        effects: list[Effect] = [PersistEpoch(epoch)]
        view = View(generation, members, self.me)
        if members == {self.me}:
            self.proposal = None
            return effects + self._install(view, now)
        self.proposal = Proposal(generation, members, now, round_started, {self.me}, last_sent=now, attempt=attempt)
        others = tuple(sorted(members - {self.me}))
        effects.append(self._send(others, PROPOSE, {"g": generation, "m": sorted(members)}))
        effects.append(Log("debug", f"proposing view {generation}: {sorted(members)}"))
        return effects

    def _on_propose(self, peer: Peer, body: Mapping, now: float) -> list[Effect]:
        generation = int(body.get("g", 0))
        members = frozenset(int(m) for m in body.get("m", ()))
        self._note_generation(generation)
        sender = peer.nodeid
        reason = ""
        if self.me not in members:
            reason = "not_member"
        elif generation <= self.promised:
            reason = "promised_higher"
        elif self.evicted_by:
            reason = "evicted"
        elif sender in self.disallowed:
            reason = "disallowed"
        elif generation % self.settings.stride != sender:
            reason = "not_its_generation"
        elif any(n < sender for n in self.mutual(now)):
            reason = "not_coordinator"
        elif self.state == MEMBER and sender not in self.view.members and self._drops_live_member(members, now):
            # An outsider (a node coming back, a healed partition) may merge into our view, not split it: it has
            # not heard every member yet, and taking us away from one we hear would evict that member.
            reason = "drops_live_member"
        if reason == "promised_higher" and self.accepted is not None and self.accepted[0].generation == generation \
                and self.accepted[0].members == members and self.accepted[0].coordinator == sender:
            return [self._send((sender,), ACCEPT, {"g": generation})]  # a repeat: our ACCEPT was lost
        if reason:
            return [self._send((sender,), NACK, {"g": generation, "promised": self.promised, "reason": reason})]
        self.promised = generation
        self.accepted = (View(generation, members, sender), now)
        self.proposal = None  # someone with a better claim leads
        return [self._send((sender,), ACCEPT, {"g": generation})]

    def _drops_live_member(self, members: frozenset[int], now: float) -> bool:
        mutual = self.mutual(now)
        return any(m in mutual and m not in members for m in self.view.members - {self.me})

    def _on_accept(self, sender: int, body: Mapping, now: float) -> list[Effect]:
        self.refusals.pop(sender, None)
        proposal = self.proposal
        if proposal is None or int(body.get("g", 0)) != proposal.generation or sender not in proposal.members:
            return []
        proposal.accepted.add(sender)
        if proposal.accepted != set(proposal.members):
            return []
        self.proposal = None
        view = View(proposal.generation, proposal.members, self.me)
        dests = tuple(sorted(self.peers))  # everyone: non-members learn they are out
        return [self._send(dests, COMMIT, {"g": view.generation, "m": sorted(view.members)}),
                *self._install(view, now)]

    def _on_nack(self, sender: int, body: Mapping) -> None:
        self._note_generation(body["promised"])
        proposal = self.proposal
        if proposal is not None and body["g"] == proposal.generation:
            proposal.nacked.add(sender)
            if body["reason"] == "not_coordinator":
                since, _ = self.refusals.get(sender, (self.now, self.now))
                self.refusals[sender] = (since, self.now)

    def _refusing(self, nodeid: int) -> bool:
        """Has `nodeid` refused our proposals as not its coordinator for over a token, lately (3 tokens)?"""
        streak = self.refusals.get(nodeid)
        if streak is None:
            return False
        since, last = streak
        if self.now - last > 3 * self.settings.token:
            del self.refusals[nodeid]  # long quiet: try it again
            return False
        return last - since > self.settings.token

    def _on_commit(self, sender: int, body: Mapping, now: float) -> list[Effect]:
        generation = int(body.get("g", 0))
        members = frozenset(int(m) for m in body.get("m", ()))
        self._note_generation(generation)
        if self.accepted is None:
            return []
        view, _ = self.accepted
        if view.generation == generation and view.members == members and view.coordinator == sender:
            return self._install(view, now)
        return []

    def _install(self, view: View, now: float) -> list[Effect]:
        previous = self.view
        restarted = frozenset(m for m in self._restarted_members() if m in view.members)
        self.view = view
        self.accepted = None
        self.state = MEMBER
        lost = (previous.members - view.members - {self.me}) | restarted
        joined = (view.members - previous.members) | restarted
        left = frozenset(n for n in lost if self.peers[n].left and n not in restarted)
        removed = frozenset(n for n in left if self.peers[n].remove)
        for n in lost - restarted:
            self.dropped[n] = self.incarnations.get(n, self.peers[n].incarnation)
        self.incarnations = {m: self.peers[m].incarnation for m in view.members if m != self.me}
        for n in view.members - {self.me}:
            self.dropped.pop(n, None)
        change = ViewChange(previous, view, frozenset(lost), frozenset(joined), left, removed, restarted)
        # A heartbeat right away spreads the new generation (and repeats the commit) without waiting a period.
        return [change, Log("notice", f"view {view.generation} installed: members {sorted(view.members)} "
                                      f"(coordinator {view.coordinator})"), self._heartbeat(now)]

    def _send(self, dests: tuple[int, ...], kind: str, body: dict, now: float | None = None) -> Send:
        """Every packet gets the next sequence number; its send time is kept so an ack of it proves a recent
        round trip (the confirmation lease)."""
        self.seq += 1
        self.sent_at[self.seq] = self.now if now is None else now
        return Send(dests, kind, body, self.seq)
