#!/usr/bin/env bash
# For a GPU machine without a package index: prepare, on a machine that has one, the
# pure-Python packages tools/gpu_report.sh needs beyond what the GPU machine's python3
# already has (torch, triton, numpy, scipy, opencv, pandas, tabulate, ...), in one folder
# to copy over:
#
#   bash tools/gpu_deps.sh [OUT_DIR]        # default: output/gpu_deps (git-ignored)
#
# - the pure-Python packages copied from this interpreter's site-packages: detectron2 (the
#   v0.6 sources tools/install_deps.sh installed, placeholder _C), fvcore, iopath, yacs,
#   omegaconf, antlr4, termcolor, motmetrics, pydot, submitit, wcwidth, xmltodict;
# - pycocotools, which is compiled: its registry wheel for the GPU machine's Python
#   (GPU_PYTHON_VERSION, default 3.12) and platform, unpacked.
#
# OUT_DIR/site then goes first on PYTHONPATH there; nothing is installed on either
# machine. Send it with the device tool's `carry` (about 12 MB).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-$ROOT/output/gpu_deps}"
GPU_PYTHON_VERSION="${GPU_PYTHON_VERSION:-3.12}"
PYTHON="${PYTHON:-python}"
SITE="$OUT_DIR/site"

PURE_PACKAGES=(detectron2 fvcore iopath yacs omegaconf antlr4 termcolor motmetrics pydot
    submitit wcwidth)
PURE_MODULES=(xmltodict)  # single-file modules

rm -rf "$SITE"
mkdir -p "$SITE"
for name in "${PURE_PACKAGES[@]}" "${PURE_MODULES[@]}"; do
    source_path="$("$PYTHON" -c "import $name, os; f = $name.__file__; \
print(os.path.dirname(f) if f.endswith('__init__.py') else f)")"
    if find "$source_path" -name '*.so' | grep -q .; then
        echo "error: $name has compiled modules ($source_path); it cannot be copied" >&2
        exit 1
    fi
    cp -r "$source_path" "$SITE/"
done
find "$SITE" -name __pycache__ -type d -prune -exec rm -rf {} +

WHEELS="$OUT_DIR/wheels"
mkdir -p "$WHEELS"
COCO_VERSION="$("$PYTHON" -c "import importlib.metadata as m; print(m.version('pycocotools'))")"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version "$GPU_PYTHON_VERSION" --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --dest "$WHEELS" "pycocotools==$COCO_VERSION"
"$PYTHON" - "$WHEELS" "$SITE" <<'EOF'
import glob, sys, zipfile

wheels, site = sys.argv[1:]
for wheel in glob.glob(f"{wheels}/pycocotools-*.whl"):
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
EOF
echo "GPU dependencies in $SITE ($(du -sh "$SITE" | cut -f1)); carry: ${OUT_DIR#"$ROOT"/}"
