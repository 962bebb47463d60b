#!/usr/bin/env bash
# Scheduled lake maintenance: compact -> rollup -> retention apply -> vacuum, through the tsdb-lake CLI.
#
# Every step runs even if an earlier one failed (each is safe to repeat and commits atomically); the script
# exits non-zero if any step failed, so the scheduler (systemd, Kubernetes) records the run as failed.
#
# Environment:
#   TSDB_LAKE_URI              the lake (required): /var/lib/tsdb-lake/lake, s3://bucket/prefix, ...
#   TSDB_LAKE_STORAGE_OPTIONS  JSON object of storage options, read by the CLI itself (optional), e.g.
#                              {"endpoint_url": "https://minio.internal:9000", "region": "us-east-1"}
#                              (credentials are better left to AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)
#   TSDB_LAKE_BIN              the tsdb-lake executable (default: tsdb-lake on PATH)
#   TSDB_LAKE_VACUUM_GRACE     how long removed files stay readable for old snapshots (default 1h)
#   TSDB_LAKE_ROLLUP_SETTLE    roll raw up to floor(now - settle, 1h) (default 10m: wait for late writers)
#   TSDB_LAKE_STEPS            steps to run, space-separated (default "compact rollup retention vacuum")
set -uo pipefail

: "${TSDB_LAKE_URI:?set TSDB_LAKE_URI to the lake URI}"
BIN=${TSDB_LAKE_BIN:-tsdb-lake}
GRACE=${TSDB_LAKE_VACUUM_GRACE:-1h}
SETTLE=${TSDB_LAKE_ROLLUP_SETTLE:-10m}
STEPS=${TSDB_LAKE_STEPS:-compact rollup retention vacuum}

failed=0
step() {
    local name=$1
    shift
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) tsdb-lake $name: $*" >&2
    if ! "$BIN" "$@" --lake "$TSDB_LAKE_URI"; then
        echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) tsdb-lake $name FAILED" >&2
        failed=1
    fi
}

for s in $STEPS; do
    case "$s" in
        compact) step compact compact ;;
        rollup) step rollup rollup --settle "$SETTLE" ;;
        retention) step retention retention apply ;;
        vacuum) step vacuum vacuum --older-than "$GRACE" ;;
        *) echo "unknown step '$s' in TSDB_LAKE_STEPS" >&2; failed=1 ;;
    esac
done
exit "$failed"
