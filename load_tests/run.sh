#!/usr/bin/env bash
# Run one bounded headless Locust test against a running service, then write the report.
#
#   load_tests/run.sh [HOST] [USERS] [RUN_TIME] [OUTPUT] [extra locust options...]
#   load_tests/run.sh http://127.0.0.1:8000 8 60s reports/load --max-candidates 100
#
# Defaults: http://127.0.0.1:8000, 8 users, 60s, reports/load. The folder receives Locust's CSV
# files (locust_*.csv), locust.json, samples.jsonl, report.md, report.json and latency.png.
set -euo pipefail
cd "$(dirname "$0")/.."

HOST="${1:-http://127.0.0.1:8000}"
USERS="${2:-8}"
RUN_TIME="${3:-60s}"
OUTPUT="${4:-reports/load}"
shift $(( $# < 4 ? $# : 4 ))

mkdir -p "$OUTPUT"
# --stop-timeout lets requests in flight finish when the run time is over; --exit-code-on-error 0
# keeps going to the report, which counts the errors.
locust -f load_tests/locustfile.py --headless --only-summary \
    --host "$HOST" -u "$USERS" -r "$USERS" --run-time "$RUN_TIME" --stop-timeout 5 \
    --csv "$OUTPUT/locust" --json-file "$OUTPUT/locust" --samples "$OUTPUT/samples.jsonl" \
    --exit-code-on-error 0 "$@"
python3 load_tests/report.py --samples "$OUTPUT/samples.jsonl" --locust-json "$OUTPUT/locust.json" \
    --output "$OUTPUT" --host "$HOST"
