"""tools/fingerprint.py: a record of the same code compares equal, a changed tensor or a
missing part is reported, and the tool's exit status says which."""

import os

import torch

from ifr.experiments.fingerprint import TINY_CONFIGS, compare_fingerprints, record_fingerprint


def test_same_code_records_equal_and_a_change_is_found(tmp_path, load_tool):
    ifr_tiny = [c for c in TINY_CONFIGS if os.path.basename(c) == "ifr_tiny.yaml"]
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    record_fingerprint(ifr_tiny, str(first))
    record_fingerprint(ifr_tiny, str(second))
    assert compare_fingerprints(str(first), str(second)) == []
    record = torch.load(first, weights_only=True)
    assert {"ifr_tiny/state", "ifr_tiny/losses", "ifr_tiny/grads", "ifr_tiny/clip"} <= set(record)
    name = next(iter(record["ifr_tiny/losses"]))
    record["ifr_tiny/losses"][name] = record["ifr_tiny/losses"][name] + 1e-6
    del record["ifr_tiny/tta"]
    torch.save(record, tmp_path / "changed.pt")
    differences = compare_fingerprints(str(first), str(tmp_path / "changed.pt"))
    assert differences == [f"ifr_tiny/tta: only in {first}", f"ifr_tiny/losses{name}: differs"]
    tool = load_tool("fingerprint")
    assert tool.main(["compare", str(first), str(second)]) == 0
    assert tool.main(["compare", str(first), str(tmp_path / "changed.pt")]) == 1
