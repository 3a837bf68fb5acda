"""talkingmem/benchmarking.py: the peak table and the largest-batch extrapolation."""
from talkingmem import benchmarking


def test_peak_flops_by_device_kind():
  assert benchmarking.peak_flops("NVIDIA H200", "gpu") == 989e12
  assert benchmarking.peak_flops("cpu", "cpu") == 332e9
  assert benchmarking.peak_flops("Some Future GPU", "gpu") is None


def test_extrapolated_batch():
  # 1 GB fixed + 2 GB per sample at batch 8 (17 GB) on a 100 GB device: (90 - 1) / 2 = 44 -> 40.
  assert benchmarking.extrapolated_batch(100 * 10**9, 10**9, 17 * 10**9, 8) == 40
  # Never below the measured batch, even when the measured one is already near the limit.
  assert benchmarking.extrapolated_batch(18 * 10**9, 10**9, 17 * 10**9, 8) == 8
