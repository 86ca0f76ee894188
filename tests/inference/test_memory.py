import time

import torch

from ifr.inference.memory import _PeakRSSSampler, measure_inference_memory, random_video_input


def test_sampler_sees_a_transient_allocation():
    with _PeakRSSSampler() as sampler:
        baseline = sampler.peak
        block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched
        block += 1
        del block
    assert sampler.peak - baseline >= 48 * 1024 * 1024


def test_sampling_fallback_sees_a_held_allocation(monkeypatch):
    """Without the kernel's peak counter the sampler thread must still see memory that
    stays allocated for several sampling intervals."""
    import ifr.inference.memory as memory

    monkeypatch.setattr(memory, "_reset_peak_resident", lambda: False)
    with _PeakRSSSampler(interval_s=0.001) as sampler:
        baseline = sampler.peak
        block = torch.ones(64 * 1024 * 1024 // 4)
        block += 1
        time.sleep(0.2)
        del block
    assert sampler.peak - baseline >= 48 * 1024 * 1024


def test_random_video_input_is_a_mapper_like_dict():
    video = random_video_input(3, (16, 24))
    assert len(video["image"]) == 3 and video["image"][0].shape == (3, 16, 24)
    assert (video["height"], video["width"], video["length"]) == (16, 24, 3)


def test_measure_inference_memory_runs_the_model(toy_model):
    model = toy_model(frame_chunk=2)
    measure_inference_memory(model, num_frames=3, size=(32, 32))
    assert model.encode_calls == [2, 1]


def _allocating(num_bytes):
    def fake_run_inference(model, batched_input):
        block = torch.ones(num_bytes // 4)  # touched, so resident
        block += 1
        return {}

    return fake_run_inference


def test_measure_inference_memory_is_the_peak_above_the_baseline(toy_model, monkeypatch):
    """What inference allocates and frees again is counted; what was resident before is
    not (a 256 MiB block allocated before the call)."""
    import ifr.inference.memory as memory

    model = toy_model()
    resident_before = torch.ones(256 * 2**20 // 4)
    resident_before += 1
    monkeypatch.setattr(memory, "run_inference", _allocating(96 * 2**20))
    peak = measure_inference_memory(model, num_frames=1, size=(8, 8))
    assert 80 * 2**20 <= peak <= 160 * 2**20
    monkeypatch.setattr(memory, "run_inference", _allocating(0))
    assert measure_inference_memory(model, num_frames=1, size=(8, 8)) < 32 * 2**20
    del resident_before


def test_rendering_upsamples_one_frame_of_one_instance_at_a_time(toy_model, monkeypatch):
    """Peak memory of the masks does not grow with frames or instances: every upsampling
    to the original size is (1, 1, H0, W0)."""
    import ifr.inference.candidates as candidates
    from ifr.inference import run_inference

    shapes = []
    upsample = candidates.upsample_mask_logits

    def spy(logits, *args):
        out = upsample(logits, *args)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(candidates, "upsample_mask_logits", spy)
    video = random_video_input(5, (32, 48))
    video["height"], video["width"] = 300, 450
    output = run_inference(toy_model(top_k=4, frame_chunk=16), video)
    assert len(output["pred_masks"]) == 4
    assert shapes == [(1, 1, 300, 450)] * (5 * 4)
