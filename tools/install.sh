#!/usr/bin/env bash
# Usage: bash tools/install.sh   (or: make install)
#
# One idempotent set-up step for a fresh Python 3.11 machine:
#   virtual environment -> torch/torchvision -> mmcv 2.1.0 with its C++ ops (built once, wheel
#   cached outside the clone) -> mmengine / mmpretrain / mmdet / mmsegmentation -> `pip install -e .`
# Every step checks whether it is already done, so a second run takes seconds; when the last
# complete run was of this very script and setup.py, from this clone, a second run is one import
# check (about 5 s instead of 17 on 2 cores: make demo and make test start with it).
#
# Environment knobs:
#   MMKD_VENV   where the virtual environment lives       (default: <repo>/.venv)
#   MMKD_CACHE  where built wheels are kept across clones (default: ~/.cache/mmkd)
#   PYTHON      interpreter used to create the venv        (default: python3.11, else python3)
# -h, --help prints this text; any other argument is an error (exit status 2).
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
if [ $# -gt 0 ]; then usage >&2; exit 2; fi
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMKD_VENV:-$ROOT/.venv}
case $VENV in /*) ;; *) VENV=$PWD/$VENV ;; esac  # absolute: the check below runs from /
CACHE=${MMKD_CACHE:-$HOME/.cache/mmkd}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
WHEELS=$CACHE/wheels/torch-$TORCH_VERSION
log() { printf '[install] %s\n' "$*"; }
# Imports what the steps below install and prints the versions (fails if any is missing).
CHECK="import mmcv, mmdet, mmseg, mmpretrain, mmkd, torch; from mmcv.ops import nms
print('[install] ok: torch', torch.__version__, 'mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'mmseg', mmseg.__version__, 'mmpretrain', mmpretrain.__version__)"

# Fast path: the stamp of the last complete run (a hash of this script and setup.py, and the
# clone) still matches, and everything imports, mmkd from this clone, with the versions this
# script installs: nothing to do. Otherwise every step below checks itself. Delete the stamp
# to run them all.
STAMP=$VENV/.mmkd-install-stamp
stamp="$(cat "${BASH_SOURCE[0]}" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1) $ROOT"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$stamp" ] && (cd / &&
        MMKD_ROOT=$ROOT "$VENV/bin/python" -W ignore -c "import os, mmkd, mmcv, torch, torchvision
root = os.path.realpath(os.environ['MMKD_ROOT']) + os.sep
assert os.path.realpath(mmkd.__file__).startswith(root), mmkd.__file__
assert mmcv.__version__ == '$MMCV_VERSION' and torch.__version__.startswith('$TORCH_VERSION')
assert torchvision.__version__.startswith('$TORCHVISION_VERSION')
$CHECK" 2>/dev/null); then
    exit 0
fi
rm -f "$STAMP"

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY=$VENV/bin/python
PIP="$PY -m pip --disable-pip-version-check"

if ! $PY -c "import torch, torchvision, sys; sys.exit(not (torch.__version__.startswith('$TORCH_VERSION') and torchvision.__version__.startswith('$TORCHVISION_VERSION')))" 2>/dev/null; then
    log "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
    $PIP install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi

# setuptools<81 keeps pkg_resources, which mmcv's setup.py and, at run time, mmengine 0.10 import.
# After torch: its install may pull a newer setuptools.
$PY -c 'import pkg_resources' 2>/dev/null || $PIP install -q 'setuptools<81' wheel ninja

if ! $PY -c "import mmcv, sys; from mmcv.ops import nms, roi_align; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
    wheel=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$wheel" ]; then
        log "building mmcv $MMCV_VERSION with C++ ops (about 13 minutes on 2 cores, once per machine)"
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        $PIP download -q --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$work"
        tar -xzf "$work"/mmcv-$MMCV_VERSION.tar.gz -C "$work"
        # torch >= 2.14 headers need C++20.
        sed -i 's/-std=c++17/-std=c++20/g' "$work/mmcv-$MMCV_VERSION/setup.py"
        mkdir -p "$WHEELS"
        MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
            $PIP wheel --no-build-isolation --no-deps -w "$work/dist" "$work/mmcv-$MMCV_VERSION"
        # Copy into the cache only once complete, so an interrupted build is never reused.
        cp "$work"/dist/mmcv-$MMCV_VERSION-*.whl "$WHEELS/"
        wheel=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-*.whl | head -n 1)
    else
        log "reusing cached $wheel"
    fi
    $PIP install -q "$wheel"
fi

log "installing OpenMMLab packages and mmkd (editable)"
$PIP install -q -e "$ROOT[tests]"
$PY -c "$CHECK"
echo "$stamp" > "$STAMP"
