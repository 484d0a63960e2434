#!/usr/bin/env bash
# The main job on the embedded default tenant: install, then compile every package into dist/ and
# lint it offline (strict schema, Argo's semantic rules, step wiring). Pass a tenant config file as
# $1 to build another tenant.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
config_args=()
[ -n "${1:-}" ] && config_args=(--config "$1")
uv run tenant-dr build "${config_args[@]}" --out dist
uv run tenant-dr lint dist
