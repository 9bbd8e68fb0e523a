"""What an operator's tools do to a signaling server, shared by the operations tests: GET its
HTTP endpoints, read ``/metrics`` with prometheus_client's own parser, and start
``crdtsync signal`` as a process. Test modules import this by name: under pytest's default
import mode their folder is on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from crdtsync.testing.processes import SignalProcess

TIMEOUT = 10.0


async def http_get(url: str, path: str) -> tuple[int, dict[str, str], str]:
    """GET ``path`` on the port of the server at ``url``: status, headers, body."""
    parts = urlsplit(url)
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
            raw = await reader.read()  # the server closes after its answer
        finally:
            writer.close()
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("ascii").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body.decode()


async def health(url: str) -> tuple[int, dict[str, object]]:
    """``/healthz``: status and its JSON body."""
    status, headers, body = await http_get(url, "/healthz")
    assert headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert isinstance(answer, dict)
    return status, answer


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Samples:
    """``/metrics``, parsed as Prometheus would: each sample by name and labels."""
    status, headers, body = await http_get(url, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist yet (a counter never bumped)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def start_signal(*options: str) -> tuple[asyncio.subprocess.Process, str]:
    """``crdtsync signal --port 0 OPTIONS`` as a process (its log on a pipe), and its URL."""
    server = await SignalProcess.start(options=options, stderr=asyncio.subprocess.PIPE)
    return server.process, server.url
