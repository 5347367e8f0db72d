# Sourced by the bench scripts (benches/goals.sh, benches/counts.sh): starts the Node.js
# reference server on a free port, its output in LOG, and sets NODE_PID and NODE_URL.
#
#   start_node_reference LOG
start_node_reference() {
  local log="$1" here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  node "$here/server.js" --port 0 >"$log" 2>&1 &
  NODE_PID=$!
  NODE_URL=""
  for _ in $(seq 100); do
    NODE_URL="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$log" 2>/dev/null || true)"
    [ -n "$NODE_URL" ] && return 0
    sleep 0.1
  done
  echo "the Node reference server did not start within 10 s (see $log)" >&2
  return 1
}
