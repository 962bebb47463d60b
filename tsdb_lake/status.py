"""``lake.status()``: per tenant and metric, what the catalog holds, as plain data and as terminal text."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from tsdb_lake.lake import Lake

__all__ = ["lake_status", "render_status"]


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lake_status(lake: Lake) -> dict[str, Any]:
    """A JSON-ready summary of the lake: version, and per tenant / metric / tier the files and points."""
    snap = lake.snapshot()
    tiers: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"files": 0, "bytes": 0, "points": 0, "partitions": set(), "min_time": None, "max_time": None}
    )
    for f in snap.by_path.values():
        t = tiers[(f.tenant, f.metric, f.tier)]
        t["files"] += 1
        t["bytes"] += f.bytes
        t["points"] += f.points
        t["partitions"].add(f.partition)
        t["min_time"] = f.min_time if t["min_time"] is None else min(t["min_time"], f.min_time)
        t["max_time"] = f.max_time if t["max_time"] is None else max(t["max_time"], f.max_time)
    out: dict[str, Any] = {"lake": lake.uri, "version": snap.version, "tenants": {}}
    for (tenant, metric, tier), t in sorted(tiers.items()):
        metric_entry = out["tenants"].setdefault(tenant, {}).setdefault(metric, {"tiers": {}})
        schema = snap.schema(tenant, metric)
        if schema is not None:
            metric_entry["labels"] = list(schema.labels)
            metric_entry["fields"] = {k: v.dtype + ("/counter" if v.kind == "counter" else "") for k, v in schema.fields.items()}
        metric_entry["tiers"][tier] = {
            "files": t["files"],
            "bytes": t["bytes"],
            "points": t["points"],
            "bytes_per_point": round(t["bytes"] / t["points"], 4) if t["points"] else None,
            "partitions": len(t["partitions"]),
            "start": _iso(t["min_time"]),
            "end": _iso(t["max_time"]),
        }
    return out


def render_status(status: dict[str, Any]) -> str:
    """The status summary as an aligned terminal table."""
    lines = [f"lake {status['lake']}  (catalog version {status['version']})"]
    if not status["tenants"]:
        lines.append("  (empty)")
    for tenant, metrics in status["tenants"].items():
        lines.append(f"tenant {tenant}")
        for metric, entry in metrics.items():
            lines.append(f"  metric {metric}  labels={entry.get('labels', [])}  fields={list(entry.get('fields', {}))}")
            lines.append(f"    {'tier':<5} {'files':>6} {'partitions':>10} {'points':>14} {'bytes':>14} {'B/pt':>7}  range")
            for tier, t in entry["tiers"].items():
                bpp = f"{t['bytes_per_point']:.3f}" if t["bytes_per_point"] is not None else "-"
                lines.append(
                    f"    {tier:<5} {t['files']:>6} {t['partitions']:>10} {t['points']:>14,} {t['bytes']:>14,} "
                    f"{bpp:>7}  {t['start']} .. {t['end']}"
                )
    return "\n".join(lines)
