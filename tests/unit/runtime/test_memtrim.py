"""Freed memory goes back to the system: the trim's rule (pure) and the C library's own calls."""

from __future__ import annotations

import ctypes
import platform

import pytest

from arcus.runtime.memtrim import MemoryTrim, resident_bytes


def test_a_look_trims_above_the_threshold_and_not_again_until_the_memory_was_used_again() -> None:
    free, rss, calls = [10 << 20], [500 << 20], []

    def trim() -> int:
        calls.append(rss[0])
        rss[0] -= 200 << 20  # pages given back; the chunks stay free in malloc's books
        return 1

    m = MemoryTrim((lambda: free[0], trim), threshold=64 << 20, rss=lambda: rss[0])
    assert m.look() == 0 and calls == []  # 10 MB free: not worth the arenas' locks
    free[0] = 300 << 20
    assert m.look() == 200 << 20 and calls == [500 << 20]
    assert (m.trims, m.trimmed) == (1, 200 << 20)
    assert m.look() == 0 and len(calls) == 1  # still "free", but already given back
    rss[0] += 100 << 20  # used (and freed) again: resident once more
    assert m.look() == 200 << 20 and len(calls) == 2


def test_without_the_c_library_functions_it_does_nothing() -> None:
    m = MemoryTrim(None)
    assert not m.available and m.look() == 0


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim and mallinfo2 are glibc's")
def test_memory_freed_below_a_live_block_goes_back_to_the_system() -> None:
    """The case glibc keeps for good: buffers freed below one still in use (the top of the heap
    is not free, so glibc's own trim cannot give them back)."""
    m = MemoryTrim(threshold=32 << 20)
    assert m.available
    size = 100_000  # below glibc's mmap threshold: from the heap, like a transport's reads
    blocks = [ctypes.create_string_buffer(size) for _ in range(1500)]  # ~150 MB, pages touched
    keeper = ctypes.create_string_buffer(size)  # allocated last: above the others in the heap
    del blocks
    before = resident_bytes()
    given = m.look()
    assert given > 100 << 20, given
    assert before - resident_bytes() > 100 << 20
    del keeper
