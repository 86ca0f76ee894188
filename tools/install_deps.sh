#!/usr/bin/env bash
# The one install path of this project (README, CI and users alike).
#
#   bash tools/install_deps.sh            # install what is missing, then `pip install -e .`
#
# Idempotent: every step first checks whether its result is already there and says
# what it found or did. Steps:
#   1. torch + torchvision as a matching pair from the package index. A torch that is
#      installed but cannot run torchvision's ops (e.g. a CPU-only local wheel paired
#      with a registry torchvision) is replaced.
#   2. detectron2: the official git source when reachable; otherwise the Python sources
#      of the v0.6 release from the registry sdist `pb1-detectron2==0.6`, with the
#      placeholder module `detectron2._C` (no compiled ops; this project uses none).
#   3. this project and its other dependencies (setup.py).
set -euo pipefail

PY=${PYTHON:-python}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
D2_GIT=${D2_GIT:-https://github.com/facebookresearch/detectron2.git}
D2_SDIST=pb1-detectron2==0.6

say() { echo "[install] $*"; }

# pip, without its notes about the local wheel index folders this machine may configure.
pip_() { "$PY" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

torch_pair_ok() {
  "$PY" - <<'PY' >/dev/null 2>&1
import torch, torchvision
from torchvision.ops import nms
nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
PY
}

install_torch() {
  if torch_pair_ok; then
    say "torch/torchvision: present ($("$PY" -c 'import torch,torchvision;print(torch.__version__, torchvision.__version__)'))"
    return
  fi
  say "torch/torchvision: installing a matching pair from the package index"
  # torchvision pins its torch exactly, so asking for torchvision alone (with no local
  # wheel folder) resolves a pair that loads together.
  pip_ install --upgrade torchvision
  torch_pair_ok || { echo "[install] ERROR: torch/torchvision still fail to load together" >&2; exit 1; }
}

d2_ok() {
  "$PY" -c 'import detectron2, detectron2.config, detectron2.engine, detectron2.modeling' >/dev/null 2>&1
}

install_d2_official() {
  command -v git >/dev/null || return 1
  timeout 20 git ls-remote "$D2_GIT" HEAD >/dev/null 2>&1 || return 1
  say "detectron2: installing the official source from $D2_GIT"
  pip_ install --no-build-isolation "git+$D2_GIT"
}

install_d2_fallback() {
  say "detectron2: official source unreachable; installing the v0.6 Python sources from $D2_SDIST"
  local tmp; tmp=$(mktemp -d)
  pip_ download --quiet --no-deps --no-binary :all: --no-build-isolation -d "$tmp" "$D2_SDIST"
  tar -xzf "$tmp"/*.tar.gz -C "$tmp"
  local src; src=$(find "$tmp" -maxdepth 1 -mindepth 1 -type d | head -n 1)
  "$PY" "$HERE/tools/_install_d2_sources.py" "$src"
  rm -rf "$tmp"
}

install_d2() {
  if d2_ok; then
    say "detectron2: present ($("$PY" -c 'import detectron2;print(detectron2.__version__, detectron2.__file__)'))"
    return
  fi
  install_d2_official || install_d2_fallback
  d2_ok || { echo "[install] ERROR: detectron2 does not import after install" >&2; exit 1; }
}

install_project() {
  if "$PY" -c 'import ifr, motmetrics, cv2, scipy, submitit, trackeval' >/dev/null 2>&1 \
     && "$PY" -m ruff --version 2>/dev/null | grep "ruff 0.17.6" >/dev/null \
     && "$PY" -m pip show ifr 2>/dev/null | grep "Editable project location: $HERE" >/dev/null; then
    # (not grep -q: it exits at the match, pip then fails writing, and pipefail fails the test)
    say "ifr: present (editable, $HERE)"
    return
  fi
  say "ifr: pip install -e $HERE"
  pip_ install --quiet --no-build-isolation -e "$HERE"
  # trackeval (HOTA, DetA, AssA) declares opencv-python, a second OpenCV beside the
  # headless build of setup.py (both install the cv2 package over each other). It imports
  # cv2 only for its J&F metric, which ifr does not use, and its other needs (numpy,
  # scipy, pycocotools, tabulate, matplotlib, pillow) come with setup.py and detectron2:
  # so it is installed without its dependencies, and is not in setup.py.
  pip_ install --quiet --no-deps "trackeval==1.3.0"
}

install_torch
install_d2
install_project
say "done"
