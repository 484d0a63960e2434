#!/usr/bin/env bash
# Install everything the tests need (uv, locked deps, redis-server) and run lint, types and tests.
# Postgres and Redis tests start real servers on free ports; S3 is moto's HTTP server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --with-services
uv run ruff check .
uv run ruff format --check .
uv run mypy
uv run pytest -n 2 --dist loadfile "$@"
