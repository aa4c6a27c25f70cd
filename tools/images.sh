#!/usr/bin/env bash
# Builds, checks and pushes the module images; the release pipelines and `./dev images` both use it.
#   tools/images.sh engine            print the container engine that will be used (fails without one)
#   tools/images.sh tags PLATFORM     print "<module folder> <image>" for every module (no engine needed)
#   tools/images.sh build PLATFORM    build every module's image for PLATFORM, tagged like the release
#   tools/images.sh smoke PLATFORM    run each built image: its version, its module's code, ONNX Runtime
#   tools/images.sh push PLATFORM     push the built images
# PLATFORM is one of module.json's platforms: arm64v8 (JetPack 6), amd64 (CPU), amd64.gpu (CUDA).
# Images are <CONTAINER_REGISTRY_ADDRESS>/mfgvision-<module>:<MFGVISION_VERSION>-<PLATFORM>, the names the
# expanded deployment manifest uses (modules/*/module.json).
# Environment:
#   MFGVISION_VERSION           the package version and the tags' version (required but for `engine`)
#   CONTAINER_REGISTRY_ADDRESS  registry part of the names (default: localhost)
#   CONTAINER_ENGINE            docker or podman (default: docker when its daemon answers, else podman)
#   IMAGES_BUILD_OPTIONS        more build options, e.g. the pipelines' layer cache (--cache-from ...)
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,8p' "$0" | cut -c3- >&2; exit 2; }

engine() {
  if [ -n "${CONTAINER_ENGINE:-}" ]; then
    "$CONTAINER_ENGINE" info >/dev/null 2>&1 && { echo "$CONTAINER_ENGINE"; return 0; }
    echo "CONTAINER_ENGINE=$CONTAINER_ENGINE does not answer ('$CONTAINER_ENGINE info' fails)" >&2
    return 1
  fi
  for candidate in docker podman; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" info >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  echo "no container engine: neither a docker daemon nor podman answers ('docker info', 'podman info')" >&2
  return 1
}

# docker/podman --platform of a module.json platform
os_arch() {
  case "$1" in
    arm64v8) echo linux/arm64 ;;
    amd64|amd64.gpu) echo linux/amd64 ;;
    *) echo "unknown platform '$1' (arm64v8, amd64, amd64.gpu)" >&2; exit 2 ;;
  esac
}

# "<folder> <image> <dockerfile> <command>" per module, from module.json and the Dockerfile's CMD
modules() {
  python3 - "$1" "${CONTAINER_REGISTRY_ADDRESS:-localhost}" "$MFGVISION_VERSION" <<'EOF'
import json, sys
from pathlib import Path
platform, registry, version = sys.argv[1:]
for spec_path in sorted(Path("modules").glob("*/module.json")):
    image = json.loads(spec_path.read_text())["image"]
    dockerfile = spec_path.parent / image["tag"]["platforms"][platform]
    repository = image["repository"].replace("${CONTAINER_REGISTRY_ADDRESS}", registry).lower()
    cmd = [line for line in dockerfile.read_text().splitlines() if line.startswith("CMD ")][-1]
    command = json.loads(cmd[4:])[0]
    print(spec_path.parent.name, f"{repository}:{version}-{platform}", dockerfile, command)
EOF
}

# The smoke check, run inside an image: the version it reports, its module's code, ONNX Runtime's
# providers (the GPU images must have CUDA's, even where no GPU is present to use it).
SMOKE='
import importlib, sys
import onnxruntime
command, platform = sys.argv[1:]
room = {"file-upload": "file_transfer", "file-download": "file_transfer"}.get(command, command.replace("-", "_"))
importlib.import_module("mfgvision." + room)
providers = onnxruntime.get_available_providers()
print("mfgvision." + room, "imports; ONNX Runtime", onnxruntime.__version__, providers)
if platform != "amd64" and "CUDAExecutionProvider" not in providers:
    sys.exit("no CUDAExecutionProvider in a " + platform + " image")
'

[ $# -ge 1 ] || usage
action=$1
if [ "$action" = engine ]; then
  engine
  exit
fi
[ $# -eq 2 ] || usage
platform=$2
arch=$(os_arch "$platform")
: "${MFGVISION_VERSION:?set MFGVISION_VERSION, the version the images are built as (e.g. 1.2.3)}"

case "$action" in
  tags)
    modules "$platform" | cut -d' ' -f1,2
    ;;
  build)
    eng=$(engine)
    build=("$eng" build)
    if [ "$eng" = docker ] && docker buildx version >/dev/null 2>&1; then
      build=(docker buildx build --load)
    fi
    read -r -a extra <<< "${IMAGES_BUILD_OPTIONS:-}"
    modules "$platform" | while read -r folder image dockerfile _; do
      echo "== $folder: $image" >&2
      start=$(date +%s)
      "${build[@]}" --platform "$arch" -f "$dockerfile" --build-arg "MFGVISION_VERSION=$MFGVISION_VERSION" \
        ${extra[@]+"${extra[@]}"} -t "$image" . </dev/null
      echo "== $folder built in $(( $(date +%s) - start )) s" >&2
    done
    ;;
  smoke)
    eng=$(engine)
    modules "$platform" | while read -r folder image _ command; do
      reported=$("$eng" run --rm --platform "$arch" "$image" --version </dev/null)
      if [ "$reported" != "mfgvision $MFGVISION_VERSION" ]; then
        echo "$folder: $image says '$reported', not 'mfgvision $MFGVISION_VERSION'" >&2
        exit 1
      fi
      "$eng" run --rm --platform "$arch" --entrypoint python "$image" -c "$SMOKE" "$command" "$platform" </dev/null
      echo "== $folder: $reported, smoke check passed" >&2
    done
    ;;
  push)
    eng=$(engine)
    modules "$platform" | while read -r _ image _; do
      "$eng" push "$image" </dev/null
    done
    ;;
  *) usage ;;
esac
