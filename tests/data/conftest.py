import pytest

from ifr.data.tiny import register_tiny_ytvis


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """The tiny dataset registered under a temporary cache root for the test session;
    the default registration is restored afterwards."""
    root = str(tmp_path_factory.mktemp("ytvis_tiny"))
    register_tiny_ytvis(root)
    yield root
    register_tiny_ytvis()
