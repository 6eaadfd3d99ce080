# The third-party WebSocket peers the test scripts use, installed when missing: the Python
# packages of tests/tls/requirements.txt (pip --target into $pylib) and tests/tls/node_modules
# (npm ci from tests/tls/package-lock.json), each redone when its pin file changes. Sourced by
# scripts/tls_test.sh and scripts/outbound_test.sh; expects `repo`, `pylib`, `step` and `die`;
# exports PYTHONPATH with $pylib first. Needs Python 3.10 or later with pip, Node.js 20 or later
# and npm.
tests=$repo/tests/tls
command -v python3 >/dev/null || die "python3 is needed"
stamp=$pylib/.lanes-requirements-sha256
req_hash=$(sha256sum "$tests/requirements.txt" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$req_hash" ]; then
  step "pip install --target $pylib -r tests/tls/requirements.txt"
  rm -rf "$pylib"
  timeout 300 python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$pylib" -r "$tests/requirements.txt" || die "pip install failed"
  echo "$req_hash" >"$stamp"
fi
export PYTHONPATH=$pylib${PYTHONPATH:+:$PYTHONPATH}
echo "python: $(python3 --version), websockets $(python3 -c 'import websockets; print(websockets.__version__)')"

command -v node >/dev/null || die "node is needed (Node.js 20 or later)"
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] ||
  die "Node.js 20 or later is needed, found $(node --version)"
stamp=$tests/node_modules/.lanes-lock-sha256
lock_hash=$(sha256sum "$tests/package-lock.json" | cut -d' ' -f1)
if [ ! -d "$tests/node_modules/ws" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  command -v npm >/dev/null || die "npm is needed"
  step "npm ci in tests/tls"
  (cd "$tests" && timeout 300 npm ci --no-audit --no-fund) || die "npm ci failed"
  echo "$lock_hash" >"$stamp"
fi
echo "node: $(node --version), ws $(node -p 'require(process.argv[1]).version' "$tests/node_modules/ws/package.json")"

