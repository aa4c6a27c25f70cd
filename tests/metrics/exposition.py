"""Reading ``/metrics`` in tests: over HTTP, with prometheus_client's own parser."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of ``url``: (name, labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample ``name`` whose labels include ``labels``; None when there is none."""
    wanted = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and wanted <= ls]
    assert len(found) <= 1, f"{name}{labels} is not one sample: {found}"
    return found[0] if found else None


def scrape_when_up(url: str) -> Samples:
    """:func:`scrape`, or no samples while nothing listens yet (for polling a starting process)."""
    try:
        return scrape(url)
    except OSError:
        return {}
