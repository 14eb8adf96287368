"""The block-read planner: the fewest Modbus requests that cover a device's points.

At config load every point becomes a `Codec` (area, address, width); points
of the same area are merged left to right into blocks of at most 125
registers / 2000 bits, bridging gaps of up to `max_gap` registers (x16 for
bit areas), never across an address the device rejected.  Greedy merging in
address order is optimal for this problem (a block can always take the next
point if any block could), so the plan is the minimum number of requests
under the limits and the gap rule.

When a block read answers exception 2 (illegal data address) the driver calls
`Plan.split(block)`: the block is replaced by two blocks covering the two
halves of its points (the gap between them is no longer bridged), and the
split stays for the life of the plan.  A one-point block that is rejected is
marked `rejected`; its point reads as a sensor fault while the rest of the
device keeps reading.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from edge_agent.drivers.codec import Codec

MAX_REGISTERS = 125   # Modbus limit for function codes 3 and 4
MAX_BITS = 2000       # Modbus limit for function codes 1 and 2
BIT_AREAS = ("co", "di")


@dataclass(eq=False)
class Block:
    """One read request: `count` registers/bits of `area` from `start`.

    `members` are (position in the device's point list, codec) pairs, sorted by
    address; `rejected` means the device refused this single-point block.  Blocks are
    not changed once planned (devices with the same codecs share them; a split makes
    new ones), so what is built from one, e.g. its BlockReader, can be kept with it.
    """
    area: str
    start: int
    count: int
    members: list[tuple[int, Codec]] = field(default_factory=list)
    rejected: bool = False

    @property
    def end(self) -> int:
        return self.start + self.count

    @property
    def is_bits(self) -> bool:
        return self.area in BIT_AREAS

    def __str__(self) -> str:
        unit = "bits" if self.is_bits else "registers"
        return f"{self.area}:{self.start}-{self.end - 1} ({self.count} {unit})"


def _limit(area: str) -> int:
    return MAX_BITS if area in BIT_AREAS else MAX_REGISTERS


def _gap(area: str, max_gap: int) -> int:
    return max_gap * 16 if area in BIT_AREAS else max_gap


def _blocked(rejected: list[tuple[str, int, int]], area: str, lo: int, hi: int) -> bool:
    """Whether any rejected range of `area` meets [lo, hi)."""
    return any(a == area and s < hi and lo < e for a, s, e in rejected)


def plan_blocks(codecs: list[Codec], max_gap: int = 10,
                rejected: list[tuple[str, int, int]] | None = None) -> list[Block]:
    """Greedy, address-ordered merge of `codecs` (positions are list indices) into blocks."""
    rejected = rejected or []
    order = sorted(range(len(codecs)), key=lambda i: (codecs[i].area, codecs[i].address, codecs[i].end))
    blocks: list[Block] = []
    cur: Block | None = None
    for i in order:
        c = codecs[i]
        if c.count > _limit(c.area):
            raise ValueError(f"{c.area}:{c.address} spans {c.count} registers, above the Modbus limit "
                             f"of {_limit(c.area)}")
        if cur is not None and cur.area == c.area:
            new_end = max(cur.end, c.end)
            if (c.address - cur.end <= _gap(c.area, max_gap)
                    and new_end - cur.start <= _limit(c.area)
                    and not _blocked(rejected, c.area, cur.end, c.address)
                    and not _blocked(rejected, c.area, c.address, c.end)
                    and not _blocked(rejected, c.area, cur.start, cur.end)):
                cur.count = new_end - cur.start
                cur.members.append((i, c))
                continue
        cur = Block(c.area, c.address, c.count, [(i, c)])
        blocks.append(cur)
    return blocks


def _span(area: str, members: list[tuple[int, Codec]]) -> Block:
    start = min(c.address for _, c in members)
    end = max(c.end for _, c in members)
    return Block(area, start, end - start, list(members))


class _Planned:
    """The blocks planned for one list of codecs, shared by every Plan of the same codecs."""
    __slots__ = ("blocks", "__weakref__")

    def __init__(self, blocks: list[Block]):
        self.blocks = blocks


_PLANNED: "weakref.WeakValueDictionary[tuple, _Planned]" = weakref.WeakValueDictionary()


class Plan:
    """The requests of one device (one unit id), mutable only through `split`.

    Devices whose points share their codecs (`codecs_of`: the same register map) share the
    planned blocks until a split; each Plan has its own list of them."""

    def __init__(self, codecs: list[Codec], max_gap: int = 10):
        self.codecs = codecs
        self.max_gap = max_gap
        self.rejected: list[tuple[str, int, int]] = []   # ranges the device refused (or contain one)
        key = (max_gap, *codecs)
        planned = _PLANNED.get(key)
        if planned is None:
            planned = _PLANNED[key] = _Planned(plan_blocks(codecs, max_gap))
        self._planned = planned               # keeps the shared entry alive while this plan lives
        self.blocks = list(planned.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def split(self, block: Block) -> list[Block]:
        """Replace `block` (answered with exception 2) by its two halves; return them.

        A single-point block cannot split: it is marked rejected and returned
        alone.  The dropped gap between the halves is remembered as rejected
        address space, so no later merge bridges it again.
        """
        pos = self.blocks.index(block)
        if len(block.members) == 1:
            alone = Block(block.area, block.start, block.count, list(block.members), rejected=True)
            self.blocks[pos] = alone          # a new block: the planned one may be another device's too
            self.rejected.append((block.area, block.start, block.end))
            return [alone]
        half = len(block.members) // 2
        left, right = _span(block.area, block.members[:half]), _span(block.area, block.members[half:])
        if left.end < right.start:
            self.rejected.append((block.area, left.end, right.start))
        self.blocks[pos:pos + 1] = [left, right]
        return [left, right]

    def describe(self, names: list[str] | None = None) -> list[str]:
        """One line per request, for `edge-agent check -v`."""
        out = []
        for b in self.blocks:
            ids = " ".join(names[i] if names else str(i) for i, _ in b.members)
            out.append(f"read {b}: {ids}" + ("  [rejected by the device]" if b.rejected else ""))
        return out
