"""A blocked sorted list of presence entries by join sequence (the memory backend's index)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from operator import attrgetter
from typing import Generic, Protocol, TypeVar


class Entry(Protocol):
    @property
    def seq(self) -> int: ...


E = TypeVar("E", bound=Entry)


_seq_of = attrgetter("seq")


class SeqList(Generic[E]):
    """Entries sorted by join sequence, newest last; a minimal blocked sorted list.

    Sequences only grow, so adding is an append to the last block; removal costs one
    bisect plus a delete inside a block of at most ``BLOCK`` items; a page seeks its
    cursor with two bisects and walks backwards. No per-call sort, no O(n) memmove.
    """

    BLOCK = 512
    __slots__ = ("_blocks", "_len", "_maxes")

    def __init__(self) -> None:
        self._blocks: list[list[E]] = []
        self._maxes: list[int] = []  # seq of the last entry of each block
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def append(self, e: E) -> None:
        """Add an entry whose seq is larger than every seq in the list."""
        self._len += 1
        if self._blocks and len(self._blocks[-1]) < self.BLOCK:
            self._blocks[-1].append(e)
            self._maxes[-1] = e.seq
        else:
            self._blocks.append([e])
            self._maxes.append(e.seq)

    def insert(self, e: E) -> None:
        """Add an entry anywhere (mark indexes: a member's seq predates the mark)."""
        bi = bisect_left(self._maxes, e.seq)
        if bi == len(self._blocks):
            self.append(e)
            return
        block = self._blocks[bi]
        block.insert(bisect_left(block, e.seq, key=_seq_of), e)
        self._len += 1
        if len(block) > 2 * self.BLOCK:  # split so inserts stay O(block)
            half = len(block) // 2
            self._blocks[bi : bi + 1] = [block[:half], block[half:]]
            self._maxes[bi : bi + 1] = [block[half - 1].seq, block[-1].seq]

    def remove(self, e: E) -> None:
        bi = bisect_left(self._maxes, e.seq)
        block = self._blocks[bi]
        i = bisect_left(block, e.seq, key=_seq_of)
        del block[i]
        self._len -= 1
        if not block:
            del self._blocks[bi], self._maxes[bi]
            return
        if i == len(block):
            self._maxes[bi] = block[-1].seq
        # Merge a shrunken block into its left neighbour so the number of blocks follows
        # the current size, not the group's join history.
        if (
            bi
            and len(block) < self.BLOCK // 4
            and len(self._blocks[bi - 1]) + len(block) <= (self.BLOCK)
        ):
            self._blocks[bi - 1].extend(block)
            self._maxes[bi - 1] = self._maxes[bi]
            del self._blocks[bi], self._maxes[bi]

    def _start(self, seq: int | None) -> tuple[int, int]:
        """Block index and position just past the newest entry below ``seq``."""
        blocks = self._blocks
        if seq is None:
            return len(blocks) - 1, len(blocks[-1])
        bi = bisect_left(self._maxes, seq)
        if bi == len(blocks):
            return bi - 1, len(blocks[-1])
        return bi, bisect_left(blocks[bi], seq, key=_seq_of)

    def take_below(self, seq: int | None, n: int) -> list[E]:
        """Up to ``n`` entries below ``seq``, newest first, copied a block slice at a time."""
        blocks = self._blocks
        out: list[E] = []
        if not blocks:
            return out
        bi, i = self._start(seq)
        while bi >= 0 and len(out) < n:
            block = blocks[bi]
            start = max(0, i - (n - len(out)))
            out.extend(reversed(block[start:i]))
            bi -= 1
            i = len(blocks[bi]) if bi >= 0 else 0
        return out

    def below(self, seq: int | None) -> Iterator[E]:
        """Entries with a seq strictly below ``seq`` (None: all), newest first."""
        blocks = self._blocks
        if not blocks:
            return
        bi, i = self._start(seq)
        while bi >= 0:
            block = blocks[bi]
            for j in range(i - 1, -1, -1):
                yield block[j]
            bi -= 1
            i = len(blocks[bi]) if bi >= 0 else 0
