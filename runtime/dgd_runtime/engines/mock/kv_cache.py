"""Paged KV cache accounting with prefix caching (vLLM-style), for the mock engine.

Memory is ``num_blocks`` blocks of ``block_size`` tokens. A full block of a sequence is
identified by its chained hash (:mod:`dgd_runtime.kv.hashing`) and shared by every
sequence with the same prefix (reference counted). When the last user of a hashed block goes
away the block stays cached in an LRU pool and is reused by a later request with the same
prefix, until memory pressure evicts it ("removed" event). Partial tail blocks are private.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from dgd_runtime.kv.hashing import ROOT_HASH, block_hashes, hash_block
from dgd_runtime.protocol import KvEvent


@dataclass(slots=True)
class SequenceBlocks:
    """The blocks one sequence holds."""

    hashes: list[int] = field(default_factory=list)
    """Chained hashes of its full blocks, each holding one reference."""
    has_tail: bool = False
    """Whether it holds a private block for a partial tail."""
    num_tokens: int = 0
    root: int = ROOT_HASH
    """Parent of its first block (:func:`~dgd_runtime.kv.hashing.media_root` with media)."""


class KvCacheManager:
    """Block accounting; collects KV events for the caller to publish."""

    def __init__(
        self, num_blocks: int, block_size: int, *, enable_prefix_caching: bool = True
    ) -> None:
        """``num_blocks`` blocks of ``block_size`` tokens."""
        if num_blocks <= 0 or block_size <= 0:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._refs: dict[int, int] = {}  # hashed block -> reference count (0 = cached, idle)
        self._idle: OrderedDict[int, None] = OrderedDict()  # LRU of hashed blocks with 0 refs
        self._private = 0  # blocks in use that are not hashed (tails, or all when caching is off)
        self.events: list[KvEvent] = []

    # ------------------------------------------------------------------ counters

    @property
    def used_blocks(self) -> int:
        """Blocks occupied (active or cached-idle)."""
        return self._private + len(self._refs)

    @property
    def active_blocks(self) -> int:
        """Blocks referenced by running sequences."""
        return self._private + len(self._refs) - len(self._idle)

    @property
    def cached_blocks(self) -> int:
        """Hashed blocks currently in memory (active or idle)."""
        return len(self._refs)

    @property
    def free_blocks(self) -> int:
        """Blocks available without eviction."""
        return self.num_blocks - self.used_blocks

    def available_blocks(self) -> int:
        """Blocks available for new allocations (free + evictable)."""
        return self.free_blocks + len(self._idle)

    def cached_hashes(self) -> list[int]:
        """All hashed blocks in memory (for a router resync)."""
        return list(self._refs)

    def take_events(self) -> list[KvEvent]:
        """Events since the last call."""
        ev, self.events = self.events, []
        return ev

    # ------------------------------------------------------------------ prompt admission

    def prompt_hashes(self, tokens: Sequence[int], root: int = ROOT_HASH) -> list[int]:
        """Chained hashes of the prompt's full blocks (the chain starting at ``root``)."""
        return block_hashes(tokens, self.block_size, root)

    def match_prefix(self, hashes: Sequence[int]) -> int:
        """How many leading blocks of ``hashes`` are in memory."""
        if not self.enable_prefix_caching:
            return 0
        n = 0
        refs = self._refs
        for h in hashes:
            if h not in refs:
                break
            n += 1
        return n

    def blocks_needed(self, num_tokens: int, hashes: Sequence[int]) -> tuple[int, int]:
        """``(matched_blocks, new_blocks)`` to hold a prompt of ``num_tokens`` tokens."""
        matched = self.match_prefix(hashes)
        total = -(-num_tokens // self.block_size)
        return matched, total - matched

    def can_allocate(self, num_tokens: int, hashes: Sequence[int], reserve: int = 0) -> bool:
        """Whether the prompt fits, keeping ``reserve`` blocks free (watermark)."""
        matched, new = self.blocks_needed(num_tokens, hashes)
        reactivated = sum(1 for h in hashes[:matched] if h in self._idle)
        return new + reserve <= self.available_blocks() - reactivated

    def allocate_prompt(
        self, tokens: Sequence[int], hashes: Sequence[int], root: int = ROOT_HASH
    ) -> tuple[SequenceBlocks, int]:
        """Take blocks for a prompt; returns the holding and the matched block count.

        The caller checked :meth:`can_allocate`. New full blocks are registered (stored events).
        ``root`` is the parent the chain ``hashes`` starts from.
        """
        matched = self.match_prefix(hashes)
        seq = SequenceBlocks(num_tokens=len(tokens), root=root)
        for h in hashes[:matched]:
            self._ref(h)
            seq.hashes.append(h)
        stored: list[int] = []
        parent = hashes[matched - 1] if matched else root
        for h in hashes[matched:]:
            if self.enable_prefix_caching and h in self._refs:
                # Cached although an earlier block was not (its parent got evicted): share it.
                self._ref(h)
            else:
                self._make_room()
                if self.enable_prefix_caching:
                    self._refs[h] = 1
                    stored.append(h)
                else:
                    self._private += 1
            seq.hashes.append(h)
        if stored:
            self.events.append(KvEvent("stored", stored, parent if parent != ROOT_HASH else None))
        if len(tokens) % self.block_size:
            self._make_room()
            self._private += 1
            seq.has_tail = True
        return seq, matched

    # ------------------------------------------------------------------ decode

    def needs_block_for_next_token(self, seq: SequenceBlocks) -> bool:
        """Whether appending one token needs a new block."""
        return seq.num_tokens % self.block_size == 0

    def append_token(self, seq: SequenceBlocks, all_tokens: Sequence[int]) -> None:
        """Account one more token; ``all_tokens`` is the sequence after the append.

        The caller checked :meth:`available_blocks` when :meth:`needs_block_for_next_token`.
        """
        bs = self.block_size
        if seq.num_tokens % bs == 0:
            self._make_room()
            self._private += 1
            seq.has_tail = True
        seq.num_tokens += 1
        if seq.num_tokens % bs == 0:
            # The tail block just filled up: it becomes a shareable hashed block.
            parent = seq.hashes[-1] if seq.hashes else seq.root
            h = hash_block(parent, all_tokens[seq.num_tokens - bs : seq.num_tokens])
            seq.has_tail = False
            if not self.enable_prefix_caching:
                seq.hashes.append(h)
                return
            self._private -= 1
            if h in self._refs:
                self._ref(h)
            else:
                self._refs[h] = 1
                self.events.append(KvEvent("stored", [h], parent if parent != ROOT_HASH else None))
            seq.hashes.append(h)

    # ------------------------------------------------------------------ release

    def free(self, seq: SequenceBlocks) -> None:
        """Release a sequence's blocks (hashed ones stay cached until evicted)."""
        if seq.has_tail:
            self._private -= 1
            seq.has_tail = False
        if not self.enable_prefix_caching:
            self._private -= len(seq.hashes)
            seq.hashes.clear()
            return
        # Release leaf-first so the LRU evicts the longest prefixes first.
        for h in reversed(seq.hashes):
            n = self._refs.get(h)
            if n is None:
                continue
            if n <= 1:
                self._refs[h] = 0
                self._idle[h] = None
            else:
                self._refs[h] = n - 1
        seq.hashes.clear()

    def clear(self) -> None:
        """Drop every idle cached block (blocks of running sequences stay)."""
        if self._idle:
            dropped = list(self._idle)
            for h in dropped:
                del self._refs[h]
            self._idle.clear()
            self.events.append(KvEvent("removed", dropped))

    # ------------------------------------------------------------------ internals

    def _ref(self, h: int) -> None:
        n = self._refs[h]
        if n == 0:
            del self._idle[h]
        self._refs[h] = n + 1

    def _make_room(self) -> None:
        if self.free_blocks > 0:
            return
        if not self._idle:
            raise MemoryError("KV cache exhausted")
        h, _ = self._idle.popitem(last=False)
        del self._refs[h]
        if self.events and self.events[-1].kind == "removed":
            self.events[-1].block_hashes.append(h)
        else:
            self.events.append(KvEvent("removed", [h]))
