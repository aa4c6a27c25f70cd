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


def test_drift_frames_while_an_alert_is_raised_one_per_gap_the_first_at_once():
    r = RetrainSampler(interval_s=0, below_probability=0, drift_gap_s=60)
    assert r.pick(0, None, raised_since=None) is None
    assert r.pick(5, 0.9, raised_since=4.5) == "drift"  # the first frame after the raise
    assert [r.pick(t, 0.9, raised_since=4.5) for t in (6, 30, 64)] == [None, None, None]
    assert r.pick(65, None, raised_since=4.5) == "drift"  # a gap later
    assert r.pick(66, None, raised_since=65.5) == "drift"  # another alert raised: at once
    assert r.pick(67, None, raised_since=65.5) is None
    assert r.pick(200, None, raised_since=None) is None  # cleared
    assert RetrainSampler(0, 0, drift_gap_s=0).pick(5, 0.9, raised_since=1) is None  # off


def test_a_drifting_line_keeps_at_most_one_frame_per_gap():
    r = RetrainSampler(interval_s=0, below_probability=0.6, drift_gap_s=60)
    picks = [r.pick(i / 25, 0.4, raised_since=0.0) for i in range(25 * 3600)]  # an hour at 25 fps
    assert picks.count("drift") == 60
    assert picks.count("uncertain") == 360  # uncertain frames keep their own gap beside
