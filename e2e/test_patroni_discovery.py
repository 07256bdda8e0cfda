"""Patroni discovery end to end: a real etcd + 3-member Patroni cluster (Debian's patroni 3.0 and etcd 3.4,
members on 127.0.0.2-4 with one port), pgkeel with `source: patroni` polling the members' GET /cluster and
watching the leader key through etcd's JSON gateway, and a writer reconnecting through pgkeel for every insert.

Through a switchover, a hard failover (kill -9 of Patroni and postmaster) and a split brain (only Patroni
killed, its PostgreSQL still answering f), no write may land on a node other than the one holding the leader
lock, and clients may only see errors while no node is writable."""

from __future__ import annotations

import threading
import time

import pytest

from e2e_util import Writer, poll
from patronicluster import PatroniCluster
from pgcluster import Pgkeel

pytestmark = pytest.mark.patroni


class NoPgCluster:
    """What pgkeel_factory's log dump needs from a cluster, for a cluster Patroni owns."""
    candidates = ""
    nodes: dict = {}


@pytest.fixture(scope="module")
def patroni():
    c = PatroniCluster(members=3, ttl=10, loop_wait=2, retry_timeout=3).start()
    c.query(c.leader(), "create table writes(id bigserial primary key, at timestamptz default clock_timestamp(), "
                        "node text)")
    yield c
    c.stop()


@pytest.fixture
def pk(patroni, pgkeel_factory):
    patroni.heal()
    return pgkeel_factory(NoPgCluster(), pass_candidates_flag=False, flags={
        "source": "patroni", "patroni_urls": ",".join(patroni.api_urls()),
        "patroni_poll_interval": "500ms", "etcd_url": patroni.etcd_url,
        "etcd_leader_key": patroni.key_prefix + "leader", "primary_wait": "5s", "probe_interval": "1s"})


class WritablePoller:
    """Asks every member pg_is_in_recovery() every 20 ms: (time, members answering f) samples, so the window
    with no writable node can be measured independently of pgkeel."""

    def __init__(self, patroni: PatroniCluster):
        self.patroni = patroni
        self.samples: list[tuple[float, frozenset[str]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            answering_f = frozenset(n for n in self.patroni.members if self.patroni.pg_is_in_recovery(n, timeout=1)
                                    is False)
            self.samples.append((time.monotonic(), answering_f))
            time.sleep(0.02)

    def finish(self):
        self.stop.set()
        self.thread.join(10)

    def no_writable_window(self, after: float) -> tuple[float, float] | None:
        """(start, end) of the first spell after `after` in which no member answered f."""
        start = None
        for t, f in self.samples:
            if t < after:
                continue
            if not f and start is None:
                start = t
            elif f and start is not None:
                return start, t
        return None


def client_window(writer: Writer, old: str, new: str, after: float) -> tuple[float, float]:
    """(last write on old, first write on new) after `after`: the window clients saw without writes."""
    last_old = max([t for t, n, _ in writer.results if n == old and t > after] or [after])
    first_new = min(t for t, n, _ in writer.results if n == new and t > after)
    return last_old, first_new


def errors_between(writer: Writer, start: float, end: float) -> list[tuple[float, str]]:
    return [(t, e) for t, _, e in writer.results if e is not None and start <= t <= end]


def host_of(patroni: PatroniCluster, name: str) -> str:
    return patroni.member(name).host


def kill_and_wait_for_new_leader(patroni: PatroniCluster, pk, kill):
    """Writer running and writing to the leader, then kill(leader); returns once another member holds the
    lock: (writer, poller, old leader, time of the kill, new leader)."""
    writer = Writer(pk.primary_port).start()
    old = patroni.leader()
    poll(lambda: len(writer.writes_on(host_of(patroni, old))) >= 5, 10, what="writes on the leader")
    poller = WritablePoller(patroni)
    kill(old)
    t_kill = patroni.member(old).killed_at
    new = patroni.wait_for(lambda: (lambda l: l if l and l != old else None)(patroni.leader()), 40,
                           what="a new leader")
    return writer, poller, old, t_kill, new


def test_switchover_moves_writes_with_no_stray_write(patroni, pk):
    """POST /switchover: every write lands on the lock holder of its moment (old leader before, new leader after,
    never the old one once the new one answers f); errors only inside the span in which no node was writable
    (plus the slack of a reconnect); the window clients see is reported next to the no-writable window and
    the leader key's gap in etcd."""
    old = patroni.leader()
    writer = Writer(pk.primary_port).start()
    poll(lambda: len(writer.writes_on(host_of(patroni, old))) >= 5, 10, what="writes on the old leader")
    poller = WritablePoller(patroni)
    watch = patroni.etcd_watch(patroni.key_prefix + "leader", prefix=False)
    t0 = time.monotonic()
    new = patroni.switchover()
    poll(lambda: len(writer.writes_on(host_of(patroni, new))) >= 5, 15, what="writes on the new leader")
    writer.finish()
    poller.finish()
    watch.close()

    new_f = min(t for t, f in poller.samples if new in f and t > t0)
    stray = writer.writes_on(host_of(patroni, old), after=new_f)
    assert stray == [], f"{len(stray)} writes reached the old leader after {new} answered f"
    gap = poller.no_writable_window(t0)
    assert gap is not None
    last_old, first_new = client_window(writer, host_of(patroni, old), host_of(patroni, new), t0)
    errors = errors_between(writer, t0, time.monotonic())
    for t, e in errors:
        assert gap[0] - 0.5 <= t <= first_new + 0.1, f"error outside the no-writable window: {e} at {t - t0:.2f}s"
    events = watch.events()
    deleted = [e.at for e in events if e.kind == "DELETE"]
    put = [e.at for e in events if e.kind == "PUT" and e.value == new]
    key_gap = (min(put) - min(deleted)) if deleted and put else float("nan")
    print(f"\nswitchover {old} -> {new}: clients without writes {1000 * (first_new - last_old):.0f} ms; "
          f"no node answering f {1000 * (gap[1] - gap[0]):.0f} ms; leader key absent in etcd "
          f"{1000 * key_gap:.0f} ms; client errors {len(errors)}; writes resumed "
          f"{1000 * (first_new - new_f):.0f} ms after {new} answered f")
    assert first_new - new_f < 1.0


def test_hard_failover_kill_9(patroni, pk):
    """kill -9 of the leader's Patroni and postmaster: writes stop, the leader lock expires after the ttl, a
    replica promotes, and writes resume on it; nothing is written anywhere else."""
    writer, poller, old, t_kill, new = kill_and_wait_for_new_leader(patroni, pk, patroni.kill_leader_hard)
    poll(lambda: len(writer.writes_on(host_of(patroni, new))) >= 5, 30, what="writes on the new leader")
    writer.finish()
    poller.finish()
    new_f = min(t for t, f in poller.samples if new in f and t > t_kill)
    others = {host_of(patroni, n) for n in patroni.members} - {host_of(patroni, old), host_of(patroni, new)}
    assert not [r for r in writer.results if r[1] in others and r[0] > t_kill]
    assert writer.writes_on(host_of(patroni, old), after=t_kill + 0.1) == []
    first_new = min(writer.writes_on(host_of(patroni, new), after=t_kill))
    print(f"\nkill -9 {old}: no writable node for {new_f - t_kill:.1f} s (ttl 10); writes resumed "
          f"{1000 * (first_new - new_f):.0f} ms after {new} answered f")
    assert first_new - new_f < 1.0


def test_split_brain_never_writes_to_the_node_that_lost_the_lock(patroni, pk):
    """Only the leader's Patroni is killed: its PostgreSQL keeps answering f while, after the ttl, another
    member takes the lock and promotes. From the moment the new leader answers f, two nodes say f; every
    write goes to the lock holder, none to the orphaned primary."""
    writer, poller, old, t_kill, new = kill_and_wait_for_new_leader(patroni, pk, patroni.kill_patroni_only)
    patroni.wait_for(lambda: patroni.pg_is_in_recovery(new) is False, 30, what=f"{new} to promote")
    t_new_f = time.monotonic()
    assert patroni.pg_is_in_recovery(old) is False, "the orphaned primary should still answer f (split brain)"
    poll(lambda: len(writer.writes_on(host_of(patroni, new))) >= 10, 30, what="writes on the new leader")
    time.sleep(1)
    writer.finish()
    poller.finish()
    both_f = [t for t, f in poller.samples if old in f and new in f]
    assert both_f, "the poller never saw both nodes answer f"
    stray = writer.writes_on(host_of(patroni, old), after=min(both_f))
    assert stray == [], f"{len(stray)} writes reached {old}, which lost the leader lock"
    print(f"\nsplit brain: both {old} and {new} answered f for {max(both_f) - min(both_f):.1f} s of polling; "
          f"{len(writer.writes_on(host_of(patroni, new), after=t_new_f))} writes went to {new}, none to {old}")
    patroni.restart_member(old)
