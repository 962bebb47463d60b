"""``lake.status()``: per tenant and metric, what the catalog holds, as plain data and as terminal text.

Everything comes from the catalog snapshot (no data file is opened): per tier the files, partitions, points,
bytes, bytes per point, time range and a series count, plus the rollup watermarks, dirty (late-data) ranges
and the retention rules that apply.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tsdb_lake.lake import Lake

__all__ = ["lake_status", "render_status"]


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(ns: int | None) -> str:
    if ns is None:
        return "forever"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if ns % (size * 1_000_000_000) == 0:
            return f"{ns // (size * 1_000_000_000)}{unit}"
    return f"{ns / 1e9:g}s"


def lake_status(lake: Lake) -> dict[str, Any]:
    """A JSON-ready summary of the lake: catalog version, and per tenant / metric / tier what it holds.

    ``series`` is the largest series count of any one partition of the tier (exact when every partition sees
    every series; a lower bound otherwise) — the catalog does not keep a lake-wide distinct count.
    """
    snap = lake.snapshot()
    tiers: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {
            "files": 0,
            "bytes": 0,
            "points": 0,
            "partitions": defaultdict(int),
            "min_time": None,
            "max_time": None,
        }
    )
    for f in snap.by_path.values():
        t = tiers[(f.tenant, f.metric, f.tier)]
        t["files"] += 1
        t["bytes"] += f.bytes
        t["points"] += f.points
        t["partitions"][f.partition] += f.series
        t["min_time"] = f.min_time if t["min_time"] is None else min(t["min_time"], f.min_time)
        t["max_time"] = f.max_time if t["max_time"] is None else max(t["max_time"], f.max_time)
    out: dict[str, Any] = {
        "lake": lake.uri,
        "version": snap.version,
        "files": len(snap.by_path),
        "bytes": snap.total_bytes,
        "tenants": {},
    }
    metrics = {(t, m) for t, m, _ in tiers} | set(snap.schemas)
    for tenant, metric in sorted(metrics):
        entry: dict[str, Any] = {"tiers": {}}
        out["tenants"].setdefault(tenant, {})[metric] = entry
        schema = snap.schema(tenant, metric)
        if schema is not None:
            entry["labels"] = list(schema.labels)
            entry["fields"] = {
                k: v.dtype + ("/counter" if v.kind == "counter" else "") for k, v in schema.fields.items()
            }
        tier_names = ["raw", *(spec.name for spec in snap.tiers_for(tenant, metric))]
        tier_names += sorted({tier for t, m, tier in tiers if (t, m) == (tenant, metric)} - set(tier_names))
        for tier in tier_names:
            found = tiers.get((tenant, metric, tier))
            t = found if found is not None else {}
            info: dict[str, Any] = {
                "files": t.get("files", 0),
                "bytes": t.get("bytes", 0),
                "points": t.get("points", 0),
                "bytes_per_point": round(t["bytes"] / t["points"], 4) if t and t["points"] else None,
                "partitions": len(t.get("partitions", ())),
                "series": max(t["partitions"].values(), default=0) if t else 0,
                "start": _iso(t.get("min_time")),
                "end": _iso(t.get("max_time")),
                "retention": _duration(snap.retention_for(tenant, metric, tier)),
            }
            if tier != "raw":
                mark = snap.watermark(tenant, metric, tier)
                info["watermark"] = _iso(mark)
                info["dirty"] = [[_iso(s), _iso(e)] for s, e in snap.dirty(tenant, metric, tier)]
            entry["tiers"][tier] = info
    out["retention_rules"] = [
        {"tenant": t, "metric": m, "tier": tier, "ttl": _duration(ttl)}
        for (t, m, tier), ttl in sorted(
            snap.retention_rules.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or "", kv[0][2])
        )
    ]
    return out


def render_status(status: dict[str, Any]) -> str:
    """The status summary as an aligned terminal table."""
    lines = [
        f"lake {status['lake']}  (catalog version {status['version']}, "
        f"{status.get('files', 0):,} files, {status.get('bytes', 0):,} bytes)"
    ]
    if not status["tenants"]:
        lines.append("  (empty: write with `tsdb-lake ingest` or run `tsdb-lake demo`)")
    for tenant, metrics in status["tenants"].items():
        lines.append(f"tenant {tenant}")
        for metric, entry in metrics.items():
            labels = ", ".join(entry.get("labels", [])) or "-"
            fields = ", ".join(entry.get("fields", {})) or "-"
            lines.append(f"  metric {metric}")
            lines.append(f"    labels: {labels}")
            lines.append(f"    fields: {fields}")
            lines.append(
                f"    {'tier':<5} {'files':>6} {'parts':>6} {'series':>7} {'points':>13} {'bytes':>13} "
                f"{'B/pt':>7} {'keep':>8}  range / rollup watermark"
            )
            for tier, t in entry["tiers"].items():
                bpp = f"{t['bytes_per_point']:.3f}" if t["bytes_per_point"] is not None else "-"
                span = f"{t['start']} .. {t['end']}" if t["start"] else "(no files)"
                lines.append(
                    f"    {tier:<5} {t['files']:>6} {t['partitions']:>6} {t['series']:>7} {t['points']:>13,} "
                    f"{t['bytes']:>13,} {bpp:>7} {t['retention']:>8}  {span}"
                )
                if tier != "raw":
                    mark = t.get("watermark") or "not built"
                    dirty = t.get("dirty") or []
                    note = f"built up to {mark}"
                    if dirty:
                        note += f"; {len(dirty)} dirty range(s), first {dirty[0][0]} .. {dirty[0][1]}"
                    lines.append(f"    {'':<5} {note}")
    rules = status.get("retention_rules") or []
    if rules:
        lines.append("retention rules (most specific scope wins):")
        for r in rules:
            lines.append(
                f"  tenant={r['tenant'] or '*'} metric={r['metric'] or '*'} tier={r['tier']}: keep {r['ttl']}"
            )
    return "\n".join(lines)
