"""Install detectron2 from the pure-Python sources of its v0.6 release (install path only).

Used by ``tools/install_deps.sh`` when the official detectron2 git source cannot be
reached. ``SRC`` is an unpacked ``pb1-detectron2==0.6`` sdist: the official v0.6 Python
sources without their C++/CUDA sources, so the extension ``detectron2._C`` cannot be
built. This script writes a *placeholder* ``detectron2/_C.py`` (a module without ops, so that
``from detectron2 import _C`` succeeds; any compiled op used through it raises
AttributeError), replaces the removed Pillow alias ``Image.LINEAR``, and installs the sources
as a regular ``detectron2`` distribution with the same package layout as the official
setup.py, ``detectron2.projects.point_rend`` and friends included.
This project uses none of the compiled ops.

Usage: python tools/_install_d2_sources.py SRC
"""

import os
import subprocess
import sys
import textwrap

PLACEHOLDER = '''"""PLACEHOLDER for the compiled extension detectron2._C (install-path
packaging gap).

Installed by ifr's tools/install_deps.sh from the Python-only v0.6 sources, which cannot
build the C++/CUDA ops (deformable conv, rotated boxes, fast COCOeval). Any attempt to
use one fails with AttributeError on this module. Install detectron2 from its official
source to get them. The three functions below only answer detectron2's environment
report (``collect_env_info``), which queries them.
"""


def get_compiler_version():
    return "none: placeholder detectron2._C, no compiled ops"


def get_cuda_version():
    return "none: placeholder detectron2._C"


def has_cuda():
    return False
'''

# Same package layout as the official setup.py.
PROJECTS = {
    "detectron2.projects.point_rend": "projects/PointRend/point_rend",
    "detectron2.projects.deeplab": "projects/DeepLab/deeplab",
    "detectron2.projects.panoptic_deeplab": "projects/Panoptic-DeepLab/panoptic_deeplab",
}

REQUIRES = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "pydot",
    "omegaconf>=2.1",
    "hydra-core>=1.1",
    "black",
]


def write_setup(src: str) -> None:
    setup_py = textwrap.dedent(
        f"""
        # Written by ifr/tools/_install_d2_sources.py: the official v0.6 sources, no C++ ops.
        from setuptools import find_packages, setup
        PROJECTS = {PROJECTS!r}
        setup(
            name="detectron2",
            version="0.6",
            description="detectron2 v0.6 Python sources (no compiled ops; placeholder _C)",
            packages=find_packages(exclude=("configs", "tests*")) + list(PROJECTS),
            package_dir=PROJECTS,
            package_data={{"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]}},
            python_requires=">=3.7",
            install_requires={REQUIRES!r},
        )
        """
    )
    with open(os.path.join(src, "setup.py"), "w") as f:
        f.write(setup_py)
    for stale in ("setup.cfg", "pyproject.toml"):
        path = os.path.join(src, stale)
        if os.path.exists(path):
            os.remove(path)


def replace_removed_pillow_alias(src: str) -> None:
    """v0.6 uses ``Image.LINEAR`` (removed in Pillow 10) as a default argument, evaluated
    when ``detectron2.data`` is imported. It was an alias of BILINEAR; the official
    source after v0.6 made the same replacement."""
    path = os.path.join(src, "detectron2", "data", "transforms", "transform.py")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("Image.LINEAR", "Image.BILINEAR"))


def main(src: str) -> None:
    if not os.path.isfile(os.path.join(src, "detectron2", "__init__.py")):
        sys.exit(f"[install] ERROR: {src} does not hold the detectron2 sources")
    with open(os.path.join(src, "detectron2", "_C.py"), "w") as f:
        f.write(PLACEHOLDER)
    replace_removed_pillow_alias(src)
    write_setup(src)
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", src]
    )
    print("[install] detectron2 0.6 (Python sources, placeholder detectron2._C) installed")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
