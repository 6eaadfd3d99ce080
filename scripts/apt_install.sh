#!/usr/bin/env bash
# Installs Debian packages for the test scripts: as root, or with sudo; when the first attempt
# fails (missing or stale package lists), updates the lists and tries once more.
#
# Usage: scripts/apt_install.sh PACKAGE...
set -euo pipefail
[ $# -gt 0 ] || {
  echo "usage: $0 PACKAGE..." >&2
  exit 2
}
command -v apt-get >/dev/null || {
  echo "apt_install.sh: $* missing and there is no apt-get" >&2
  exit 1
}
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "apt_install.sh: installing $* needs root (or sudo)" >&2
    exit 1
  fi
}
export DEBIAN_FRONTEND=noninteractive
if ! as_root apt-get install -y --no-install-recommends "$@"; then
  as_root apt-get update
  as_root apt-get install -y --no-install-recommends "$@"
fi
