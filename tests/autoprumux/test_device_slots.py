"""Where the local executor places GPU trials (autoprumux.loop.device_slots): trials a GPU,
the GPUs a search spreads over, the allocator's hand-checked placements, and the trials at once
sized to match (autoprumux.session.sizing)."""

import threading
from collections import Counter

import pytest

from autoprumux.loop.device_slots import DeviceSlots, gpu_devices, trials_per_gpu
from autoprumux.session.sizing import TrialSlots, size_trials


@pytest.mark.parametrize(
    ("share", "per_gpu"),
    [(1.0, 1), (0.5, 2), (0.25, 4), (0.3, 3), (0.4, 2), (0.1, 10), (1 / 3, 3), (0.0, 0), (2, 0)],
)
def test_trials_a_gpu_holds_are_one_over_the_share_rounded_down(share, per_gpu):
    assert trials_per_gpu(share) == per_gpu


@pytest.mark.parametrize(
    ("device", "gpus", "devices"),
    [
        ("auto", 2.0, ("cuda:0", "cuda:1")),
        ("cuda", 3.0, ("cuda:0", "cuda:1", "cuda:2")),
        ("auto", 1.5, ("cuda:0", "cuda:1")),  # the half GPU is a second one's part
        ("cuda:1", 1.0, ("cuda:1",)),  # the one --device names
        ("auto", 0.0, ()),  # CPU trials
        ("cpu", 2.0, ()),
    ],
)
def test_a_search_spreads_over_the_gpus_its_device_names(device, gpus, devices):
    assert gpu_devices(device, gpus) == devices


def test_two_gpus_at_a_quarter_each_hold_eight_trials_spread_before_stacked():
    slots = DeviceSlots.for_share(("cuda:0", "cuda:1"), 0.25)
    assert (slots.capacity, slots.per_device, slots.share) == (8, 4, 0.25)
    # the GPU with the most free slots, the lower index among equals: they alternate
    placed = [slots.acquire() for _ in range(8)]
    assert placed == ["cuda:0", "cuda:1"] * 4
    assert slots.free() == {"cuda:0": 0, "cuda:1": 0}
    with pytest.raises(RuntimeError, match="every one of the 8 trial slot"):
        slots.acquire()
    # two trials end on cuda:1, one on cuda:0: cuda:1 has 2 free, cuda:0 1
    slots.release("cuda:1")
    slots.release("cuda:1")
    slots.release("cuda:0")
    assert slots.free() == {"cuda:0": 1, "cuda:1": 2}
    assert slots.acquire() == "cuda:1"  # 2 free beats 1
    assert slots.acquire() == "cuda:0"  # 1 and 1: the lower index
    assert slots.acquire() == "cuda:1"
    assert slots.free() == {"cuda:0": 0, "cuda:1": 0}


def test_a_release_without_a_trial_is_a_bug():
    slots = DeviceSlots.for_share(("cuda:0",), 0.5)
    with pytest.raises(RuntimeError, match="cuda:0 has no trial to release"):
        slots.release("cuda:0")
    with pytest.raises(ValueError, match="no trial slot"):
        DeviceSlots.for_share(("cuda:0",), 2.0)  # no trial fits


def test_the_allocator_is_safe_from_many_threads():
    """Three GPUs of 5 slots, acquired by 15 threads at once, then 15 released and 15 taken
    again, many times over: every GPU ends holding exactly its 5, never 6."""
    slots = DeviceSlots.for_share(("cuda:0", "cuda:1", "cuda:2"), 0.2)
    for _ in range(20):
        taken: list[str] = []
        barrier = threading.Barrier(15)

        def take(taken=taken, barrier=barrier):
            barrier.wait()
            taken.append(slots.acquire())

        threads = [threading.Thread(target=take) for _ in range(15)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert Counter(taken) == {"cuda:0": 5, "cuda:1": 5, "cuda:2": 5}
        for device in taken:
            slots.release(device)
    assert slots.free() == {"cuda:0": 5, "cuda:1": 5, "cuda:2": 5}


@pytest.mark.parametrize(
    ("gpus", "share", "workers"),
    [
        (2.0, 0.25, 8),  # 2 x 4: the allocator's 8 slots
        (3.0, 0.4, 6),  # 3 x floor(2.5): a trial never straddles two GPUs (not 3 // 0.4 = 7)
        (3.0, 0.1, 30),  # 3 x 10, not 29 (3 // 0.1 is 29.0 in floating point)
        (1.5, 0.5, 3),  # 1 x 2, and the half GPU's 1
        (1.0, 1.0, 1),
    ],
)
def test_gpu_trials_at_once_match_the_slots_of_whole_gpus(gpus, share, workers):
    sized = size_trials(cores=16, gpus=gpus, gpus_per_trial=share, cpus_per_trial=None)
    assert sized == TrialSlots(workers, 1.0, share)
    whole = gpu_devices("auto", gpus)
    assert DeviceSlots.for_share(whole, share).capacity >= workers
