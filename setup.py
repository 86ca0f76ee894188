"""Install ifr. Use ``bash tools/install_deps.sh``: it installs torch and detectron2 first."""

from setuptools import find_packages, setup

setup(
    name="ifr",
    version="0.1.0",
    description="Video instance segmentation with Inter-Frame Recurrent attention (Detectron2)",
    license="Apache-2.0",
    packages=find_packages(include=("ifr", "ifr.*")),
    python_requires=">=3.9",
    install_requires=[
        # torch, torchvision and detectron2 are installed by tools/install_deps.sh.
        "numpy",
        "scipy",
        "pycocotools>=2.0.6",
        "opencv-python-headless",
        "fvcore",
        "motmetrics>=1.4.0",
        # trackeval==1.3.0 (HOTA) is installed by tools/install_deps.sh with --no-deps: it
        # declares opencv-python, which would be a second OpenCV beside the headless one.
        "pandas",
        "submitit",
        "matplotlib",
        "tqdm",
        "safetensors",
        "pytest",
        # The style check of `make test` (ruff.toml); pinned, as formatter output changes
        # between releases.
        "ruff==0.17.6",
    ],
)
