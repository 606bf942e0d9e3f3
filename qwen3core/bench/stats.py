"""Median and spread of repeated measurements."""

from __future__ import annotations

import statistics


def summarize(values: list[float]) -> dict[str, float]:
    """median, min and max of ``values`` (all equal to the value when measured once)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}
