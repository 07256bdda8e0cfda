"""Self-test of the Patroni + etcd harness (patronicluster.py): a 3-member cluster starts with one leader and two
streaming replicas, a switchover and a hard failover move the primary as Patroni says they should, a Patroni-only
kill leaves PostgreSQL running, and the etcd v3 JSON gateway serves the leader key. Prints the measured times.

Select with `-m patroni` (or `-k patroni`); it also runs with the rest of the suite."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass

import psycopg2
import pytest

from patronicluster import PatroniCluster, http_request

pytestmark = pytest.mark.patroni

TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2, 3  # short timings keep the failover test near 10 s


@dataclass
class Sample:
    """One pg_is_in_recovery() answer: asked at t0, answered at t1 (time.monotonic()); None = no answer."""
    name: str
    t0: float
    t1: float
    in_recovery: bool | None


class RoleSampler:
    """Asks every member pg_is_in_recovery() every 50 ms over a new connection, one thread per member."""

    def __init__(self, cluster: PatroniCluster, interval: float = 0.05):
        self.cluster, self.interval = cluster, interval
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in cluster.members]

    def _run(self, name: str):
        while not self._stop.is_set():
            t0 = time.monotonic()
            value = self.cluster.pg_is_in_recovery(name, timeout=1)
            with self._lock:
                self.samples.append(Sample(name, t0, time.monotonic(), value))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def __enter__(self) -> "RoleSampler":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(5)

    def primaries(self, name: str | None = None, after: float = 0.0) -> list[Sample]:
        """Samples answering f (of one member, when name is given) asked at or after `after`, oldest first."""
        with self._lock:
            found = [s for s in self.samples if s.in_recovery is False and s.t0 >= after]
        return sorted((s for s in found if name is None or s.name == name), key=lambda s: s.t0)

    def longest_gap_without_primary(self, after: float) -> float:
        """Longest time between two consecutive answers f (from any member) asked after `after`."""
        times = [(s.t0 + s.t1) / 2 for s in self.primaries(after=after)]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


@pytest.fixture(scope="module")
def patroni():
    """One Patroni cluster (ttl 10, loop_wait 2, retry_timeout 3) for the whole module; the tests run in order."""
    c = PatroniCluster(members=3, ttl=TTL, loop_wait=LOOP_WAIT, retry_timeout=RETRY_TIMEOUT)
    c.start(timeout=60)
    print(f"\nPATRONI START: 3 members healthy after {c.start_seconds:.2f}s (scope {c.scope}, etcd {c.etcd_url})")
    yield c
    t0 = time.monotonic()
    c.stop()
    print(f"\nPATRONI STOP: {time.monotonic() - t0:.2f}s (Patroni exits after: {c.stop_seconds})")
    left = c.processes_under_dir()
    assert not c.leftovers_killed and not left, \
        f"processes left after stop: killed {c.leftovers_killed}, still there {left}"


def roles(c: PatroniCluster) -> dict[str, str]:
    return {m["name"]: m["role"] for m in c.cluster()["members"]}


def test_start_gives_one_leader_and_two_streaming_replicas(patroni):
    """The cluster started within 40 s; /cluster lists m0..m2 on 127.0.0.2..4 with one PostgreSQL port, one
    leader and two running replicas; pg_is_in_recovery() agrees (f on the leader only); the leader streams to
    both; every Patroni and postmaster pid is alive; the etcd leader key names the leader."""
    c = patroni
    assert c.start_seconds < 40, f"start took {c.start_seconds:.1f}s"
    members = c.cluster()["members"]
    assert [m["name"] for m in members] == ["m0", "m1", "m2"]
    assert [m["host"] for m in members] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert len({m["port"] for m in members}) == 1
    assert {m["api_url"] for m in members} == {u + "/patroni" for u in c.api_urls()}
    leader = c.leader()
    assert [m["name"] for m in members if m["role"] == "leader"] == [leader]
    assert all(m["role"] == "replica" and m["state"] == "running" for m in members if m["name"] != leader)
    assert {n: c.pg_is_in_recovery(n) for n in c.members} == {n: n != leader for n in c.members}
    streaming = c.query(leader, "select application_name from pg_stat_replication where state = 'streaming' "
                                "order by 1")
    assert [r[0] for r in streaming] == sorted(n for n in c.members if n != leader)
    by_name = {m["name"]: m for m in members}
    for m in c.members.values():
        assert m.patroni_pid and m.pg_pid(), f"{m.name}: patroni {m.patroni_pid}, postmaster {m.pg_pid()}"
        assert (m.host, m.pg_port) == (by_name[m.name]["host"], by_name[m.name]["port"])
    assert c.etcd_leader_key() == leader
    config = json.loads(http_request("GET", c.member(leader).api_url + "/config")[1])
    assert (config["ttl"], config["loop_wait"], config["retry_timeout"]) == (TTL, LOOP_WAIT, RETRY_TIMEOUT)


def test_etcd_gateway_serves_the_cluster_keys(patroni):
    """POST /v3/kv/range on the etcd JSON gateway: base64 keys and values, int64 fields as strings, the prefix
    /service/<scope>/ holds leader, config, initialize and a key per member; a missing key gives no kvs."""
    c = patroni
    leader_key = c.key_prefix + "leader"
    raw = c.etcd_post("/v3/kv/range", {"key": base64.b64encode(leader_key.encode()).decode()})
    assert raw["count"] == "1" and isinstance(raw["header"]["revision"], str)
    (kv,) = raw["kvs"]
    assert base64.b64decode(kv["key"]).decode() == leader_key
    assert base64.b64decode(kv["value"]).decode() == c.leader()
    assert int(kv["lease"]) > 0, "the leader key is bound to a lease"
    keys = c.etcd_get(c.key_prefix, prefix=True)
    for name in ("leader", "config", "initialize", "members/m0", "members/m1", "members/m2"):
        assert c.key_prefix + name in keys, sorted(keys)
    assert json.loads(keys[c.key_prefix + "config"])["ttl"] == TTL
    missing = c.etcd_post("/v3/kv/range", {"key": base64.b64encode(b"/no/such/key").decode()})
    assert "kvs" not in missing and "count" not in missing


# Each test below starts with c.heal(), so one that failed half-way does not leave the next a member short.


def test_switchover_moves_the_primary(patroni):
    """POST /switchover to a named replica: the new leader answers pg_is_in_recovery() = f, the old one t; no
    moment where both answered f; the gap with no primary is printed and under 10 s; the etcd watch stream sees
    the leader key deleted (value old) and then put (value new)."""
    c = patroni
    c.heal()
    old = c.leader()
    candidate = next(n for n in c.members if n != old)
    with c.etcd_watch(c.key_prefix + "leader", prefix=False) as watch, RoleSampler(c) as sampler:
        time.sleep(0.3)
        t_request = time.monotonic()
        new = c.switchover(candidate)
        took = time.monotonic() - t_request
        time.sleep(0.3)
    assert new == candidate and c.leader() == new
    assert c.pg_is_in_recovery(new) is False and c.pg_is_in_recovery(old) is True
    old_f, new_f = sampler.primaries(old), sampler.primaries(new, after=t_request)
    assert old_f and new_f, "both nodes were seen as primary during the test"
    assert old_f[-1].t0 < new_f[0].t1, "the old and the new leader answered f at the same time"
    window = (new_f[0].t0 + new_f[0].t1) / 2 - (old_f[-1].t0 + old_f[-1].t1) / 2
    gap = sampler.longest_gap_without_primary(after=t_request - 0.3)
    print(f"\nPATRONI SWITCHOVER {old} -> {new}: healthy again after {took:.2f}s; old last answered f at "
          f"+{old_f[-1].t1 - t_request:.2f}s, new first answered f at +{new_f[0].t1 - t_request:.2f}s; "
          f"no primary for {window:.2f}s (longest gap between f answers {gap:.2f}s)")
    assert 0 < window < 10
    events = [(e.kind, e.prev_value if e.kind == "DELETE" else e.value) for e in watch.events()]
    assert ("DELETE", old) in events and ("PUT", new) in events, events
    assert events.index(("DELETE", old)) < events.index(("PUT", new)), events
    assert c.etcd_leader_key() == new


def test_hard_failover_elects_a_new_leader_within_ttl(patroni):
    """kill -9 of the leader's Patroni and postmaster: no member answers f until the leader key's lease expires
    (at least ttl - loop_wait), a replica answers f within ttl + loop_wait + 5 s, the lease expiry shows as a
    DELETE on the etcd watch; restarting the old leader brings it back as a streaming replica (pg_rewind)."""
    c = patroni
    c.heal()
    old = c.leader()
    with c.etcd_watch(c.key_prefix + "leader", prefix=False) as watch, RoleSampler(c) as sampler:
        time.sleep(0.3)
        old_pids = (c.member(old).patroni_pid, c.member(old).pg_pid())
        assert c.kill_leader_hard(old) == old
        t_kill = c.member(old).killed_at
        others_f = lambda: [s for s in sampler.primaries(after=t_kill) if s.name != old]  # noqa: E731
        first = c.wait_for(others_f, TTL + LOOP_WAIT + 20, "a new primary", interval=0.05)[0]
        failover = first.t1 - t_kill
        watch.wait_for(lambda: any(e.kind == "PUT" for e in watch.events()), 10, "leader key put")
    new = first.name
    print(f"\nPATRONI HARD FAILOVER: killed {old} (patroni {old_pids[0]}, postmaster {old_pids[1]}); {new} answered "
          f"f after {failover:.2f}s (ttl {TTL}, loop_wait {LOOP_WAIT})")
    assert new != old and not sampler.primaries(old, after=t_kill)
    assert c.member(old).patroni_pid is None and c.member(old).pg_pid() is None
    assert TTL - LOOP_WAIT - 1 <= failover <= TTL + LOOP_WAIT + 5, f"failover took {failover:.2f}s"
    events = [(e.kind, e.prev_value if e.kind == "DELETE" else e.value) for e in watch.events()]
    assert events[:2] == [("DELETE", old), ("PUT", new)], events
    t0 = time.monotonic()
    c.restart_member(old, wait=True, timeout=60)
    rejoin = time.monotonic() - t0
    print(f"PATRONI REJOIN: {old} streaming again {rejoin:.2f}s after its Patroni was restarted")
    assert c.leader() == new and c.pg_is_in_recovery(old) is True


def test_kill_patroni_only_leaves_postgres_running(patroni):
    """kill -9 of a replica's Patroni alone: its postmaster keeps running and still answers t; restarting the
    member brings the cluster back to one leader and two streaming replicas."""
    c = patroni
    c.heal()
    replica = next(n for n in c.members if n != c.leader())
    pg_pid = c.member(replica).pg_pid()
    c.kill_patroni_only(replica)
    time.sleep(1)
    assert c.member(replica).patroni_pid is None
    assert c.member(replica).pg_pid() == pg_pid and c.pg_is_in_recovery(replica) is True
    c.restart_member(replica, wait=True, timeout=60)
    assert roles(c)[replica] == "replica" and c.pg_is_in_recovery(replica) is True


def test_same_host_cluster_with_scram_and_switchover_without_candidate():
    """A second, 2-member cluster on 127.0.0.1 with distinct ports and scram-sha-256 in pg_hba: replication
    works (the replica streams with the harness's passwords), a wrong superuser password is refused, and a
    switchover without a candidate moves the primary to the other member."""
    c = PatroniCluster(members=2, ttl=TTL, loop_wait=LOOP_WAIT, retry_timeout=RETRY_TIMEOUT, distinct_hosts=False,
                       auth="scram-sha-256")
    try:
        c.start(timeout=60)
        members = c.cluster()["members"]
        assert {m["host"] for m in members} == {"127.0.0.1"} and len({m["port"] for m in members}) == 2
        old = c.leader()
        m = c.member(old)
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(m.dsn(password="wrong"), connect_timeout=5).close()
        assert c.query(old, "select current_user, inet_server_port()") == [("postgres", m.pg_port)]
        new = c.switchover()
        assert new != old and c.leader() == new
        assert c.pg_is_in_recovery(new) is False and c.pg_is_in_recovery(old) is True
    finally:
        c.stop(graceful=False)
    assert not c.processes_under_dir() and not c.base_dir.exists()
