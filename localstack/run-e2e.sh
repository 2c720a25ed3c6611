#!/usr/bin/env bash
# Runs Herald's integration suite (tests/: the store contract suite, herald-local end to end on the
# aws backend) against LocalStack instead of DynamoDB Local and moto, then a smoke run of
# `herald-local --backend aws` on the tables and queues the init hook created.
#
#   LOCALSTACK_AUTH_TOKEN=... ./localstack/run-e2e.sh [extra test-runner arguments]
#
# Needs Docker with its engine running, and LOCALSTACK_AUTH_TOKEN. Starts LocalStack with
# localstack/docker-compose.yml and stops it afterwards (HERALD_KEEP_LOCALSTACK=1 keeps it running;
# HERALD_LOCALSTACK_ENDPOINT=http://host:port uses one that is already running and leaves it alone).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
COMPOSE=(docker compose -f "$HERE/docker-compose.yml")
log() { printf '[localstack-e2e] %s\n' "$*" >&2; }

ENDPOINT="${HERALD_LOCALSTACK_ENDPOINT:-}"
if [ -z "$ENDPOINT" ]; then
  : "${LOCALSTACK_AUTH_TOKEN:?set LOCALSTACK_AUTH_TOKEN: the LocalStack image does not start without one (localstack/README.md)}"
  command -v docker >/dev/null || { log "docker is not installed"; exit 1; }
  docker info >/dev/null 2>&1 || { log "no Docker engine is running (docker info failed)"; exit 1; }
  log "starting LocalStack"
  "${COMPOSE[@]}" up -d --wait
  if [ "${HERALD_KEEP_LOCALSTACK:-0}" != 1 ]; then
    trap 'log "stopping LocalStack"; "${COMPOSE[@]}" down -v >/dev/null 2>&1 || true' EXIT
  fi
  ENDPOINT="http://127.0.0.1:${LOCALSTACK_PORT:-4566}"
fi

log "waiting for the init hook on $ENDPOINT"
for _ in $(seq 1 90); do
  if curl -sf "$ENDPOINT/_localstack/init/ready" | grep -q '"completed": *true'; then break; fi
  sleep 2
done
curl -sf "$ENDPOINT/_localstack/init/ready" | grep -q '"completed": *true' || { log "LocalStack's init hooks did not complete"; exit 1; }

# The suite reads these two endpoints (tests/src/dynamo.rs, tests/src/local.rs): DynamoDB and SQS
# are both LocalStack here. Each test makes tables and queues of its own (fresh prefixes).
export HERALD_TEST_DYNAMODB_ENDPOINT="$ENDPOINT"
export HERALD_TEST_MOTO_ENDPOINT="$ENDPOINT"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

cd "$ROOT"
log "running the suite against LocalStack"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -p herald-tests --no-fail-fast "$@"
else
  cargo test -p herald-tests --no-fail-fast "$@"
fi

# Smoke: herald-local on the resources the init hook created (no --create-resources).
log "smoke run: herald-local --backend aws on the init hook's tables and queues"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cargo build -q -p herald-local
AWS_ENDPOINT_URL="$ENDPOINT" HERALD_TABLE_PREFIX="${HERALD_TABLE_PREFIX:-herald-}" \
  "$ROOT/target/debug/herald-local" --backend aws --port "$PORT" >"$ROOT/target/localstack-herald-local.log" 2>&1 &
LOCAL_PID=$!
ok=0
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; then ok=1; break; fi
  sleep 0.2
done
kill "$LOCAL_PID" 2>/dev/null || true
wait "$LOCAL_PID" 2>/dev/null || true
[ "$ok" = 1 ] || { log "herald-local did not become healthy (target/localstack-herald-local.log)"; exit 1; }
log "LocalStack run passed"
