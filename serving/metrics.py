"""Request counters and latencies, exposed in Prometheus' text format.

Enabled by a monitoring config (``model_config.MonitoringConfig``): the REST port then
answers ``GET <path>`` (TF Serving's default ``/monitoring/prometheus/metrics``).
"""

import threading
from collections import defaultdict
from typing import Callable, Dict, Optional, Tuple

PREFIX = ":tensorflow:serving:"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counts requests by (model, signature, status) and sums their latency."""

    def __init__(self, batch_stats=None, versions: Optional[Callable[[], Dict[str, list]]] = None):
        self._lock = threading.Lock()
        self._counts: Dict[Tuple[str, str, str], int] = defaultdict(int)
        self._latency: Dict[Tuple[str, str], list] = defaultdict(lambda: [0.0, 0])
        self._batch_stats = batch_stats
        self._versions = versions

    def record(self, model: str, signature: str, status: str, seconds: float) -> None:
        """Counts one request and its run time."""
        with self._lock:
            self._counts[(model, signature, status)] += 1
            entry = self._latency[(model, signature)]
            entry[0] += seconds
            entry[1] += 1

    def request_count(self, model: str, signature: str, status: str = "OK") -> int:
        """How many requests ended with ``status``."""
        with self._lock:
            return self._counts.get((model, signature, status), 0)

    def prometheus_text(self) -> str:
        """All metrics in Prometheus' text exposition format."""
        lines = [f"# TYPE {PREFIX}request_count counter"]
        with self._lock:
            for (model, signature, status), count in sorted(self._counts.items()):
                lines.append(
                    f'{PREFIX}request_count{{model_name="{_escape(model)}",signature_name="{_escape(signature)}",'
                    f'status="{status}"}} {count}'
                )
            lines.append(f"# TYPE {PREFIX}request_latency_seconds summary")
            for (model, signature), (total, count) in sorted(self._latency.items()):
                labels = f'model_name="{_escape(model)}",signature_name="{_escape(signature)}"'
                lines.append(f"{PREFIX}request_latency_seconds_sum{{{labels}}} {total:.6f}")
                lines.append(f"{PREFIX}request_latency_seconds_count{{{labels}}} {count}")
        if self._batch_stats is not None:
            stats = self._batch_stats.snapshot()
            lines.append(f"# TYPE {PREFIX}batching_model_calls counter")
            lines.append(f"{PREFIX}batching_model_calls {stats['calls']}")
            lines.append(f"# TYPE {PREFIX}batching_requests counter")
            lines.append(f"{PREFIX}batching_requests {stats['requests']}")
        if self._versions is not None:
            lines.append(f"# TYPE {PREFIX}loaded_versions gauge")
            for model, versions in sorted(self._versions().items()):
                lines.append(f'{PREFIX}loaded_versions{{model_name="{_escape(model)}"}} {len(versions)}')
        return "\n".join(lines) + "\n"
