#!/usr/bin/env bash
# Builds the peer WebSocket echo servers that scripts/compare.sh runs against lanes, and leaves
# one launcher per peer at target/peers/bin/<name> (run as `<launcher> PORT`, or
# `<launcher> PORT CERT KEY` to serve wss with the peer's usual TLS stack; each one is the
# server process itself or a wrapper that execs it):
#
#   tokio-tungstenite  rust/ (crates.io; own cargo workspace, target dir target/peers)
#   fastwebsockets     rust/ (crates.io)
#   gorilla            go/   (Debian's golang-go and golang-github-gorilla-websocket-dev,
#                            GOPATH mode: no Go module proxy)
#   node-ws            node/ (npm: ws, pinned by package-lock.json)
#
# Installs the Go and Node toolchains with apt-get when they are missing; Rust (cargo) must
# already be there, as for lanes itself. Idempotent: a second run only rebuilds what changed.
#
# Usage: benches/peers/build.sh [NAME...]      (default: every peer)
set -euo pipefail

peers=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$peers/../.." && pwd)
out=$root/target/peers
bin=$out/bin
mkdir -p "$bin"

apt_install() {
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"; then
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"
  fi
}

# Atomically replaces $bin/$2 with file $1 (a running server keeps its old inode).
place() {
  cp -f "$1" "$bin/.$2.tmp"
  chmod 755 "$bin/.$2.tmp"
  mv -f "$bin/.$2.tmp" "$bin/$2"
}

rust_built=false
build_rust() {
  $rust_built && return 0
  command -v cargo >/dev/null || {
    echo "build.sh: cargo not found (install Rust as for lanes itself)" >&2
    return 1
  }
  echo "==> peers: cargo build --release (tokio-tungstenite, fastwebsockets)"
  cargo build --release --locked --quiet --manifest-path "$peers/rust/Cargo.toml" \
    --target-dir "$out"
  rust_built=true
}

build_tokio_tungstenite() {
  build_rust
  place "$out/release/tokio-tungstenite" tokio-tungstenite
  # The client of scripts/client_cost.sh.
  place "$out/release/tokio-tungstenite-client" tokio-tungstenite-client
}

build_fastwebsockets() {
  build_rust
  place "$out/release/fastwebsockets" fastwebsockets
}

build_gorilla() {
  local gopath=/usr/share/gocode
  if ! command -v go >/dev/null || [ ! -d "$gopath/src/github.com/gorilla/websocket" ]; then
    apt_install golang-go golang-github-gorilla-websocket-dev
  fi
  echo "==> peers: go build (gorilla)"
  GO111MODULE=off GOPATH=$gopath GOFLAGS='' GOCACHE=$out/go-cache \
    go build -trimpath -o "$out/gorilla" "$peers/go/main.go"
  place "$out/gorilla" gorilla
}

build_node_ws() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install nodejs npm
  fi
  echo "==> peers: npm ci (node-ws)"
  (cd "$peers/node" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
  # The launcher finds server.js relative to itself, so the checkout can move.
  cat >"$out/node-ws.sh" <<'SH'
#!/bin/sh
# Launcher for the node-ws peer (written by benches/peers/build.sh): exec, so that the
# caller's PID is the server's.
exec node "$(dirname "$0")/../../../benches/peers/node/server.js" "$@"
SH
  place "$out/node-ws.sh" node-ws
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(tokio-tungstenite fastwebsockets gorilla node-ws)
for name in "${names[@]}"; do
  case "$name" in
    tokio-tungstenite) build_tokio_tungstenite ;;
    fastwebsockets) build_fastwebsockets ;;
    gorilla) build_gorilla ;;
    node-ws) build_node_ws ;;
    *)
      echo "build.sh: unknown peer '$name'" >&2
      exit 2
      ;;
  esac
done
echo "==> peers: ${names[*]} in ${bin#"$root"/}"
