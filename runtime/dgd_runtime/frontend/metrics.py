"""Prometheus metrics of the frontend, named after Dynamo's `dynamo_frontend_*` family.

A tiny lock-free registry: the frontend is one asyncio thread, and prometheus_client's locks
and label lookups would cost more than the work being measured on the per-token path.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

PREFIX = "dynamo_frontend"

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
ITL_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
TOKEN_BUCKETS: tuple[float, ...] = (
    1,
    8,
    16,
    32,
    64,
    128,
    256,
    512,
    1024,
    2048,
    4096,
    8192,
    16384,
    32768,
    65536,
    131072,
)


def format_value(value: float) -> str:
    """A sample value with every significant digit: integral values print as integers, others
    as the shortest exact float (never `%g`, whose 6 digits freeze counters past 10^6)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    inner = ",".join(
        n + '="' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        for n, v in zip(names, values, strict=True)
    )
    return "{" + inner + "}"


class Counter:
    """A monotonically increasing counter with labels."""

    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        self.name, self.doc, self.labels = name, doc, tuple(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        """Add `amount` to the series with these label values."""
        self.values[label_values] = self.values.get(label_values, 0.0) + amount

    def render(self, out: list[str]) -> None:
        """Append the exposition lines."""
        out.append(f"# HELP {self.name} {self.doc}\n# TYPE {self.name} counter\n")
        for key, value in self.values.items():
            out.append(f"{self.name}{_labels(self.labels, key)} {format_value(value)}\n")


class Gauge(Counter):
    """A value that goes up and down."""

    def dec(self, *label_values: str, amount: float = 1.0) -> None:
        """Subtract `amount`."""
        self.inc(*label_values, amount=-amount)

    def set(self, *label_values: str, value: float) -> None:
        """Set the series to `value`."""
        self.values[label_values] = value

    def render(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {self.doc}\n# TYPE {self.name} gauge\n")
        for key, value in self.values.items():
            out.append(f"{self.name}{_labels(self.labels, key)} {format_value(value)}\n")


class Histogram:
    """A cumulative histogram with labels."""

    def __init__(
        self, name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> None:
        self.name, self.doc, self.labels = name, doc, tuple(labels)
        self.buckets = tuple(buckets)
        self.series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *label_values: str) -> None:
        """Record one observation."""
        entry = self.series.get(label_values)
        if entry is None:
            entry = self.series[label_values] = ([0] * (len(self.buckets) + 1), [0.0, 0.0])
        entry[0][bisect_left(self.buckets, value)] += 1
        entry[1][0] += value
        entry[1][1] += 1

    def observe_many(self, value: float, count: int, *label_values: str) -> None:
        """Record `count` observations of the same value (e.g. one ITL per token of a chunk)."""
        if count <= 0:
            return
        entry = self.series.get(label_values)
        if entry is None:
            entry = self.series[label_values] = ([0] * (len(self.buckets) + 1), [0.0, 0.0])
        entry[0][bisect_left(self.buckets, value)] += count
        entry[1][0] += value * count
        entry[1][1] += count

    def render(self, out: list[str]) -> None:
        """Append the exposition lines."""
        out.append(f"# HELP {self.name} {self.doc}\n# TYPE {self.name} histogram\n")
        for key, (counts, (total, count)) in self.series.items():
            cumulative = 0
            for bound, n in zip((*self.buckets, float("inf")), counts, strict=True):
                cumulative += n
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                labels = _labels((*self.labels, "le"), (*key, le))
                out.append(f"{self.name}_bucket{labels} {cumulative}\n")
            base = _labels(self.labels, key)
            out.append(
                f"{self.name}_sum{base} {format_value(total)}\n"
                f"{self.name}_count{base} {format_value(count)}\n"
            )


class FrontendMetrics:
    """Every metric the frontend exports."""

    def __init__(self, prefix: str = PREFIX) -> None:
        p = prefix
        self.requests_total = Counter(
            f"{p}_requests_total",
            "Requests processed, by outcome",
            ("model", "endpoint", "request_type", "status", "error_type"),
        )
        self.inflight = Gauge(f"{p}_inflight_requests", "Requests in flight", ("model",))
        self.disconnected = Counter(
            f"{p}_disconnected_clients", "Clients that went away mid-request"
        )
        self.ttft = Histogram(
            f"{p}_time_to_first_token_seconds", "Time to first token", LATENCY_BUCKETS, ("model",)
        )
        self.itl = Histogram(
            f"{p}_inter_token_latency_seconds", "Inter-token latency", ITL_BUCKETS, ("model",)
        )
        self.duration = Histogram(
            f"{p}_request_duration_seconds", "Request duration", LATENCY_BUCKETS, ("model",)
        )
        self.isl = Histogram(
            f"{p}_input_sequence_tokens",
            "Input sequence length in tokens",
            TOKEN_BUCKETS,
            ("model",),
        )
        self.osl = Histogram(
            f"{p}_output_sequence_tokens",
            "Output sequence length in tokens",
            TOKEN_BUCKETS,
            ("model",),
        )
        self.output_tokens = Counter(
            f"{p}_output_tokens_total", "Output tokens generated", ("model",)
        )
        self.cached_tokens = Histogram(
            f"{p}_cached_tokens", "Prompt tokens served from cache", TOKEN_BUCKETS, ("model",)
        )
        self.model_ready = Gauge(
            f"{p}_model_ready", "1 when the model has live workers", ("model",)
        )
        self.context_length = Gauge(f"{p}_model_context_length", "Model context length", ("model",))
        self.kv_block_size = Gauge(
            f"{p}_model_kv_cache_block_size", "KV cache block size", ("model",)
        )
        self.disagg_requests = Counter(
            f"{p}_disagg_requests_total",
            "Requests to decode workers, by how their prompt was prefilled "
            "(mode=disaggregated: on a prefill worker; local_prefill: on the decode worker)",
            ("model", "mode"),
        )
        self.media_items = Counter(
            f"{p}_media_items_total", "Media items (images, videos, audio) in requests", ("model",)
        )
        self._all: tuple[Counter | Histogram, ...] = (
            self.requests_total,
            self.inflight,
            self.disconnected,
            self.ttft,
            self.itl,
            self.duration,
            self.isl,
            self.osl,
            self.output_tokens,
            self.cached_tokens,
            self.model_ready,
            self.context_length,
            self.kv_block_size,
            self.disagg_requests,
            self.media_items,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        out: list[str] = []
        for metric in self._all:
            metric.render(out)
        return "".join(out).encode()
