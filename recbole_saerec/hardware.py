"""What this machine computes fast: the one place that decides whether bf16 pays.

bf16 halves memory traffic and, on CPUs with native bf16 matrix units (Intel AMX,
AVX512-BF16) or on GPUs, multiplies matmul throughput several times. On a CPU
without them torch emulates bf16 and a matmul runs 20-100x SLOWER than fp32
(measured on an AMD EPYC VM with AVX2 only: 1024^3 at 81 GFLOP/s fp32 against
0.8 bf16). A setting ``auto`` therefore means "bf16 where the hardware makes it
fast": decided here by timing the same small matmul in both types once per process
and device, so no CPU-flag table can go stale.
"""
import functools
import time

import torch

# bf16 must be at least this much faster than fp32 to count as native (a native unit is 2-8x)
NATIVE_SPEEDUP = 1.25
AUTO = "auto"


def _time_matmul(dtype, device, n=256, reps=5):
    # its own generator: the first model built in a process resolves `auto` while its parameters are being
    # initialised, and a draw from the global one would give it another initialisation than the next model
    a = torch.randn(n, n, device=device, generator=torch.Generator(device=device).manual_seed(0)).to(dtype)
    a @ a  # warm-up (oneDNN primitive creation)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ a
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / reps


@functools.lru_cache(maxsize=None)
def _bf16_fast(device_str):
    device = torch.device(device_str)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    fp32 = min(_time_matmul(torch.float32, device) for _ in range(2))
    bf16 = min(_time_matmul(torch.bfloat16, device) for _ in range(2))
    return bf16 * NATIVE_SPEEDUP <= fp32


def bf16_fast(device="cpu"):
    """True when bf16 matmuls run natively fast on `device` (timed once per process)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _bf16_fast(str(device))


def resolve_bf16(value, device="cpu"):
    """A bf16 switch from the config: True / False as given, ``auto`` = :func:`bf16_fast`."""
    if isinstance(value, str) and value.lower() == AUTO:
        return bf16_fast(device)
    return bool(value)


def cpu_capability():
    """torch's name for the CPU's vector unit (e.g. 'AVX2', 'AVX512'), for run records."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return None
