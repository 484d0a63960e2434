#!/usr/bin/env bash
# Install what tenant-dr needs on a fresh machine: uv (pinned), the locked Python environment
# (.venv from uv.lock, all extras + dev tools), and redis-server (for tests and the Redis restore).
# PostgreSQL server binaries are expected on the machine (Debian: postgresql-15); the tests find them.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
fi

if [ "${1:-}" = "--with-services" ] && ! command -v redis-server >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  # Debian starts a system redis on 6379; the tests start their own on free ports.
fi

uv sync --frozen --all-extras --quiet
