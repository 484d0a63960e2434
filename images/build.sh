#!/usr/bin/env bash
# Build (and by default push) the tenant-dr step images with docker buildx.
#
#   images/build.sh [--config FILE] [--registry REG] [--tag TAG] [--platform LIST] [--load | --no-push]
#                   [--build-arg NAME=VALUE]... [--dry-run] [IMAGE...]
#
# Images are the keys of images/images.yaml (default: all of them); each is built from images/<key>/Dockerfile
# with the repository root as context and tagged <registry>/tenant-dr-<key>:<tag>, the same names the
# templates use. Registry and tag come from --registry/--tag, else from `tenant-dr config show` of the tenant
# config (--config FILE, or $TENANT_DR_CONFIG, or the embedded default). The Python base image (and its
# digest pin) and the uv version come from the `build:` section of images/images.yaml.
#
#   --platform linux/amd64,linux/arm64   multi-arch (needs --push, a docker-container builder and QEMU/binfmt)
#   --load                               load into the local docker engine instead of pushing (one platform)
#   --no-push                            build only (the result stays in the build cache)
#   --dry-run                            print the docker commands instead of running them
#
# Python and the tenant config are read with `uv run --frozen python` from the repository; set
# TENANT_DR_PYTHON to use another interpreter that has the project installed. Runs on bash >= 3.2 (macOS).
# See docs/images.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { echo "build.sh: $*" >&2; exit 2; }

config="${TENANT_DR_CONFIG:-}"
registry=""
tag=""
platform=""
output="--push"
dry_run=0
extra_args=()
keys=()
while (($#)); do
  case "$1" in
    --config) config="${2:?--config needs a file}"; shift 2 ;;
    --registry) registry="${2:?--registry needs a value}"; shift 2 ;;
    --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
    --platform) platform="${2:?--platform needs a value}"; shift 2 ;;
    --build-arg) extra_args+=(--build-arg "${2:?--build-arg needs NAME=VALUE}"); shift 2 ;;
    --load) output="--load"; shift ;;
    --no-push) output=""; shift ;;
    --push) output="--push"; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) keys+=("$1"); shift ;;
  esac
done

if [[ -n "${TENANT_DR_PYTHON:-}" ]]; then
  py=("$TENANT_DR_PYTHON")
else
  command -v uv >/dev/null || die "uv is not on PATH (or set TENANT_DR_PYTHON to a python with tenant-dr installed)"
  py=(uv run --frozen --quiet python)
fi

# Registry and tag: flags win; otherwise the tenant config's images.registry / images.tag.
if [[ -z "$registry" || -z "$tag" ]]; then
  config_args=(config show)
  [[ -n "$config" ]] && config_args+=(--config "$config")
  shown="$("${py[@]}" -c 'import sys; from workflows.cli import main; sys.argv[0] = "tenant-dr"; main()' \
    "${config_args[@]}")" || die "cannot read the tenant config${config:+ $config}"
  pair="$(printf '%s' "$shown" | "${py[@]}" -c '
import sys, yaml
images = yaml.safe_load(sys.stdin)["images"]
print(images["registry"], images["tag"])')" || die "cannot read images.registry/images.tag from the tenant config"
  read -r cfg_registry cfg_tag <<<"$pair"
  registry="${registry:-$cfg_registry}"
  tag="${tag:-$cfg_tag}"
fi

[[ "$registry" =~ ^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*$ ]] || die "registry '$registry' is not host[:port][/path] (lowercase)"
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "tag '$tag' is not a valid image tag"

# Image keys and build args from images/images.yaml (the one source of image names).
plan_text="$("${py[@]}" - ${keys[@]+"${keys[@]}"} <<'EOF'
import sys
import yaml

spec = yaml.safe_load(open("images/images.yaml", encoding="utf-8"))
known = list(spec["images"])
wanted = sys.argv[1:] or known
unknown = [k for k in wanted if k not in known]
if unknown:
    sys.exit(f"build.sh: unknown image {', '.join(unknown)}; images/images.yaml has: {', '.join(known)}")
build = spec.get("build") or {}
base = build["python_image"]
if build.get("python_digest"):
    base = f"{base}@{build['python_digest']}"
print(f"PYTHON_IMAGE={base}")
print(f"UV_VERSION={build['uv_version']}")
print("--")
print(*wanted, sep="\n")
EOF
)" || exit 2
build_args=()
images=()
in_args=1
while IFS= read -r line; do
  if [[ "$line" == "--" ]]; then
    in_args=0
  elif ((in_args)); then
    build_args+=(--build-arg "$line")
  else
    images+=("$line")
  fi
done <<<"$plan_text"

revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
run() {
  if ((dry_run)); then
    local arg out=()
    for arg in "$@"; do
      if [[ "$arg" =~ ^[A-Za-z0-9_./:=@,+-]+$ ]]; then out+=("$arg"); else out+=("$(printf '%q' "$arg")"); fi
    done
    echo "${out[*]}"
  else
    "$@"
  fi
}

for key in "${images[@]}"; do
  ref="${registry}/tenant-dr-${key}:${tag}"
  cmd=(docker buildx build --file "images/${key}/Dockerfile" --tag "$ref"
    --label "org.opencontainers.image.version=${tag}" --label "org.opencontainers.image.revision=${revision}"
    "${build_args[@]}")
  ((${#extra_args[@]})) && cmd+=("${extra_args[@]}")  # (bash 3.2, macOS: no empty "${a[@]}" under set -u)
  [[ -n "$platform" ]] && cmd+=(--platform "$platform")
  [[ -n "$output" ]] && cmd+=("$output")
  cmd+=(.)
  ((dry_run)) || echo "build.sh: building $ref" >&2
  run "${cmd[@]}"
done
