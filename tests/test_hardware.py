"""hardware.resolve_bf16: 'auto' follows the timed matmul, True/False are kept as given."""
import torch

from recbole_saerec import hardware


def _fake_timer(bf16_seconds, fp32_seconds):
    def time_matmul(dtype, device, n=256, reps=5):
        return bf16_seconds if dtype == torch.bfloat16 else fp32_seconds
    return time_matmul


def test_auto_follows_the_timing(monkeypatch):
    for bf16_s, fp32_s, expected in ((0.001, 0.004, True), (0.05, 0.004, False), (0.0039, 0.004, False)):
        hardware._bf16_fast.cache_clear()
        monkeypatch.setattr(hardware, "_time_matmul", _fake_timer(bf16_s, fp32_s))
        assert hardware.resolve_bf16("auto", "cpu") is expected
        assert hardware.resolve_bf16("AUTO", "cpu") is expected
    hardware._bf16_fast.cache_clear()


def test_explicit_values_are_kept(monkeypatch):
    monkeypatch.setattr(hardware, "_time_matmul", _fake_timer(1.0, 0.001))  # bf16 slow: auto would say False
    hardware._bf16_fast.cache_clear()
    assert hardware.resolve_bf16(True, "cpu") is True
    assert hardware.resolve_bf16(False, "cpu") is False
    hardware._bf16_fast.cache_clear()


def test_timing_draws_nothing_from_the_seeded_random_stream():
    """Resolving 'auto' happens inside a model's __init__: one seed must give one initialisation whether the
    model is the first of its process (the timing runs) or not (the answer is cached)."""
    hardware._bf16_fast.cache_clear()
    torch.manual_seed(0)
    hardware.resolve_bf16("auto", "cpu")  # times the matmuls
    first = torch.rand(3)
    torch.manual_seed(0)
    hardware.resolve_bf16("auto", "cpu")  # cached
    assert torch.equal(first, torch.rand(3))
