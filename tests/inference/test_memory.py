import torch

from ifr.inference.memory import _PeakRSSSampler, measure_inference_memory, random_video_input


def test_sampler_sees_a_transient_allocation():
    with _PeakRSSSampler() as sampler:
        baseline = sampler.peak
        block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched
        block += 1
        del block
    assert sampler.peak - baseline >= 48 * 1024 * 1024


def test_random_video_input_is_a_mapper_like_dict():
    video = random_video_input(3, (16, 24))
    assert len(video["image"]) == 3 and video["image"][0].shape == (3, 16, 24)
    assert (video["height"], video["width"], video["length"]) == (16, 24, 3)


def test_measure_inference_memory_runs_the_model(toy_model):
    model = toy_model(frame_chunk=2)
    peak = measure_inference_memory(model, num_frames=3, size=(32, 32))
    assert isinstance(peak, int) and peak >= 0
    assert model.encode_calls == [2, 1]
