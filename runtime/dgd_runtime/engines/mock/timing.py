"""Simulated step times of the mock engine, calibrated on Dynamo's mocker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class MockTiming:
    """Simulated step times in milliseconds (before ``speedup_ratio``).

    Calibrated on Dynamo's mocker (reference machine, speedup 1): decode 5.75 ms at batch 1 and
    6.8 ms at batch 64; a 113-token prefill ~20 ms alone and ~150 ms for 64 of them in one
    batch (so prefill is mostly linear in batched tokens, with a small per-sequence quadratic
    attention term that matters for long prompts). A step that both prefills and decodes
    costs the sum of both parts.
    """

    decode_base_ms: float = 5.73
    decode_per_seq_ms: float = 0.0167
    prefill_base_ms: float = 18.0
    prefill_per_token_ms: float = 0.0188
    prefill_per_token_sq_ms: float = 1.0e-6

    def step_ms(self, num_decode: int, prefill_tokens: int, prefill_sq_sum: int = 0) -> float:
        """Time of one step decoding ``num_decode`` sequences and prefilling some tokens.

        ``prefill_sq_sum`` is the sum over prefilling sequences of (new tokens)^2.
        """
        ms = 0.0
        if num_decode:
            ms += self.decode_base_ms + self.decode_per_seq_ms * num_decode
        if prefill_tokens:
            ms += (
                self.prefill_base_ms
                + self.prefill_per_token_ms * prefill_tokens
                + self.prefill_per_token_sq_ms * prefill_sq_sum
            )
        return ms
