import pytest

from mfgvision.cis.sampler import RetrainSampler, Sampler


def _admitted(sampler, camera_fps, seconds):
    return sum(sampler.admit(i / camera_fps) for i in range(int(camera_fps * seconds)))


@pytest.mark.parametrize(
    "camera_fps, inference_fps, expected",
    [(25, 1, 10), (25, 0.2, 2), (25, 5, 50), (10, 30, 100), (30, 0, 300)],
)
def test_rate_by_time(camera_fps, inference_fps, expected):
    # Over 10 s: never zero when inference_fps > camera_fps (the original's 0-stride bug); 0 = every frame.
    assert _admitted(Sampler(inference_fps), camera_fps, 10) == expected


def test_late_frames_do_not_burst():
    s = Sampler(1.0)
    assert s.admit(0.0)
    assert s.admit(5.0)  # a gap of 5 s
    assert not s.admit(5.5)
    assert s.admit(6.0)


def test_retrain_interval_and_uncertain():
    r = RetrainSampler(interval_s=60, below_probability=0.6, min_gap=10)
    assert r.pick(0, 0.9) == "interval"
    assert r.pick(1, 0.9) is None
    assert r.pick(2, 0.5) == "uncertain"
    assert r.pick(5, 0.4) is None  # within min_gap
    assert r.pick(13, 0.4) == "uncertain"
    assert r.pick(14, None) is None
    assert r.pick(61, None) == "interval"
    assert RetrainSampler(0, 0).pick(100, 0.1) is None
