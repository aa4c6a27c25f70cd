#!/bin/sh
# Installs the mfgvision package into /opt/venv, the same way for every module image.
# Called by every modules/<Module>/Dockerfile.<platform> with the ONNX Runtime flavour of that platform:
#   cpu     x86_64: the package's own onnxruntime (CPU) dependency
#   cuda    x86_64 + CUDA: onnxruntime-gpu from PyPI instead of onnxruntime
#   jetson  aarch64 (JetPack): onnxruntime-gpu from NVIDIA's Jetson wheel index ($ORT_INDEX_URL);
#           the package itself does not pull onnxruntime on aarch64
# onnxruntime and onnxruntime-gpu install the same Python package and overwrite each other, so an image
# ends up with exactly one of them; the last step checks it.
# Optional extras (camera SDKs etc.) come from $EXTRAS, e.g. EXTRAS=basler.
# The package version is $MFGVISION_VERSION, the release's git tag without its "v" (the release pipelines
# pass it as a build argument). The build context has no .git, so without it the package says 0.0.0.
set -eu
flavour=${1:?usage: install-mfgvision.sh cpu|cuda|jetson}
ORT_GPU=${ORT_GPU:-onnxruntime-gpu>=1.20,<2}
ORT_INDEX_URL=${ORT_INDEX_URL:-https://pypi.jetson-ai-lab.io/jp6/cu126}
EXTRAS=${EXTRAS:-}
MFGVISION_VERSION=${MFGVISION_VERSION:-}
if [ -n "$MFGVISION_VERSION" ]; then
  # setuptools-scm's override for one distribution (pyproject.toml [tool.setuptools_scm])
  export SETUPTOOLS_SCM_PRETEND_VERSION_FOR_MFGVISION="$MFGVISION_VERSION"
fi

python3 -m venv /opt/venv
pip=/opt/venv/bin/pip
$pip install --no-cache-dir --upgrade pip
if [ -n "$EXTRAS" ]; then
  $pip install --no-cache-dir "/src[$EXTRAS]"
else
  $pip install --no-cache-dir /src
fi
case "$flavour" in
  cpu) ;;
  cuda)
    $pip uninstall -y onnxruntime
    $pip install --no-cache-dir "$ORT_GPU"
    ;;
  jetson)
    $pip install --no-cache-dir --extra-index-url "$ORT_INDEX_URL" "$ORT_GPU"
    ;;
  *) echo "unknown flavour $flavour" >&2; exit 2 ;;
esac
count=$($pip list --format=freeze | grep -Eci '^onnxruntime(-gpu)?==' || true)
if [ "$count" -ne 1 ]; then
  echo "expected exactly one ONNX Runtime distribution, found $count" >&2
  exit 1
fi
installed=$(/opt/venv/bin/python -c "import mfgvision; print(mfgvision.__version__)")
if [ -n "$MFGVISION_VERSION" ] && [ "$installed" != "$MFGVISION_VERSION" ]; then
  echo "mfgvision installed as $installed, not $MFGVISION_VERSION: use a PEP 440 version (1.2.3, 1.3.0rc1)" >&2
  exit 1
fi
/opt/venv/bin/python -c "import mfgvision, onnxruntime; print('mfgvision', mfgvision.__version__, 'onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())"
rm -rf /src /root/.cache
