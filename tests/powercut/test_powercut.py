"""Power cuts under the real agent: buffer and outbox on cutfs, kill -9 then cut, boot, restart.

In both durability modes: a cut right after the first start keeps the
folders the agent created and everything in them; after every cut the buffer
passes its integrity check; no seq is ever reused (the consumer never sees one
seq with two contents, and every seq up to the last arrives); every spec file
seen before a cut is there, whole, at the end.  `full` loses no committed row;
`normal` loses only rows committed within its window (README "What can be lost").
"""
from __future__ import annotations

import pytest
from cutmount import cutfs  # noqa: F401 (fixture)
from rig import Rig, assert_no_seq_reused

from e2e import Subscriber, last_seq, wait_for
from test_e2e import assert_gapless

# normal: sync every buffer.sync_every (1 s), checked on the agent's 1 s tick, plus a commit's
# batch_every and the scheduling slack of a shared machine
NORMAL_WINDOW = 2.5


def check_cut(rig: Rig, sub: Subscriber) -> None:
    cut = rig.cuts[-1]
    seen = max(sub.seqs(), default=0)
    assert cut.next_seq > seen, f"cut {len(rig.cuts)}: the buffer continues at {cut.next_seq}, " \
                                f"but the consumer already has seq {seen}"
    if rig.durability == "full":
        assert cut.lost == 0 and cut.next_seq > cut.committed_top, f"full lost committed rows: {cut}"
    else:
        assert cut.lost_span <= NORMAL_WINDOW, f"normal lost rows older than its window: {cut}"


def files_back(rig: Rig):
    return set(rig.files_seen) <= set(rig.spec_files())


def final_run(rig: Rig, sub: Subscriber, timeout: float = 30) -> tuple[int, int]:
    """Run once more until everything is out, stop cleanly, and check the whole history;
    return (last seq, redeliveries)."""
    rig.start()
    wait_for(lambda: files_back(rig), timeout, "every spec file seen before a cut")
    last = last_seq(rig.stop())
    wait_for(lambda: set(range(1, last + 1)) <= set(sub.seqs()), timeout, f"every seq up to {last}")
    sub.stop()
    repeats = assert_gapless(sub.seqs(), last)
    assert_no_seq_reused(sub)
    rig.observe()
    rig.assert_files_whole_and_kept()
    for run in range(1, rig.runs + 1):
        text = (rig.tmp / f"agent{run}.log").read_text(errors="replace")
        assert "is corrupt" not in text and "Traceback" not in text, text[-3000:]
    return last, repeats


@pytest.mark.parametrize("durability", ["normal", "full"])
def test_cuts_with_the_broker_up_down_and_flapping(tmp_path, cutfs, sim, mosquitto_factory, durability):
    broker = mosquitto_factory(persistent=True)
    sub = Subscriber(broker.port, session=f"cut-{durability}").start()
    rig = Rig(tmp_path, cutfs, sim, broker.url, durability)

    # 1. the first start creates every folder; a cut right after it keeps them and their files
    rig.start()
    wait_for(lambda: rig.observe() >= 3 and len(sub.seqs()) >= 5, 40, "spec files and MQTT messages")
    rig.cut()
    check_cut(rig, sub)
    assert rig.cuts[-1].files_after == rig.cuts[-1].files_before, rig.cuts[-1]

    # 2. the broker down: the buffer keeps everything, the outbox grows
    rig.start()
    wait_for(lambda: files_back(rig), 20, "the files of the first run back in the outbox")
    broker.stop()
    top = rig.cuts[-1].next_seq
    def buffered_while_down():
        rows = rig.committed()                  # one read: a second one may find the file busy (empty)
        return rows and rows[0][0] > top + 10 and rig.observe()
    wait_for(buffered_while_down, 30, "rows buffered while the broker is down")
    rig.cut()
    check_cut(rig, sub)

    # 3. the broker flapping: up, some delivery, down, up again, cut
    rig.start()
    broker.start()
    wait_for(lambda: max(sub.seqs(), default=0) > top, 30, "delivery after the broker came back")
    broker.stop()
    broker.start()
    seen = max(sub.seqs())
    wait_for(lambda: max(sub.seqs()) > seen, 30, "delivery after the broker came back again")
    rig.cut()
    check_cut(rig, sub)

    # 4. a last run with the broker up drains everything; a clean stop
    last, _ = final_run(rig, sub)
    print(f"{durability}: {len(rig.cuts)} cuts, seq 1..{last}, {len(rig.files_seen)} spec files, "
          f"lost per cut {[c.lost for c in rig.cuts]}, span {[round(c.lost_span, 2) for c in rig.cuts]}")
