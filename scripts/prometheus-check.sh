#!/usr/bin/env bash
# Starts a real Prometheus server that scrapes a running portal on loopback,
# and queries a portal_ series back through Prometheus's HTTP API.
# Needs build/portal (make build) and Debian's prometheus package.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${PORTAL_BIN:-build/portal}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || shuf -i 20000-40000 -n 1; }
pport=$(free_port)
mport=$(free_port)

PORTAL_ANONYMOUS_UPLOADS=true "$bin" serve --listen "127.0.0.1:$pport" --data-dir "$work/data" --log-level warn &
pids+=($!)
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$pport/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$pport/readyz" >/dev/null

cat > "$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: portal
    static_configs:
      - targets: ['127.0.0.1:$pport']
YML
promtool check config "$work/prometheus.yml" >/dev/null
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$mport" --log.level=warn >"$work/prom.log" 2>&1 &
pids+=($!)

query='portal_build_info'
for i in $(seq 1 60); do
  out=$(curl -fsS "http://127.0.0.1:$mport/api/v1/query?query=$query" 2>/dev/null || true)
  if echo "$out" | grep -q '"__name__":"portal_build_info"'; then
    echo "prometheus-check: Prometheus scraped the portal and returned $query: $out"
    up=$(curl -fsS "http://127.0.0.1:$mport/api/v1/query?query=up%7Bjob%3D%22portal%22%7D")
    echo "prometheus-check: up{job=\"portal\"} = $up"
    exit 0
  fi
  sleep 0.5
done
echo "prometheus-check: no $query series after 30 s" >&2
cat "$work/prom.log" >&2
exit 1
