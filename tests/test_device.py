"""`gtacli.device`: the one device resolver and the one CPU thread setting (--threads / GTACLI_THREADS)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from gtacli import device as device_module
from gtacli.device import THREADS_ENV, configure_threads, resolve_device
from gtacli.errors import UsageError


def test_auto_is_cuda_when_present_else_cpu():
    expected = torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    for spelling in ("auto", None, "", " AUTO "):
        assert resolve_device(spelling) == expected


def test_cpu_and_a_torch_device_pass_through():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_asked_for_where_there_is_none_is_a_usage_error(name):
    with pytest.raises(UsageError, match="CUDA is not available") as info:
        resolve_device(name)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["gpu0", "banana", "cuda:x", "mps", "meta"])
def test_garbage_and_unsupported_devices_are_usage_errors(name):
    with pytest.raises(UsageError, match=name) as info:
        resolve_device(name)
    assert "auto, cpu, cuda" in str(info.value) and "\n" not in str(info.value)


@pytest.fixture
def restore_threads(monkeypatch):
    """Each test starts with no explicit --threads and gets torch's thread count back afterwards."""
    before = torch.get_num_threads()
    monkeypatch.setattr(device_module, "_explicit_threads", None)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    yield
    torch.set_num_threads(before)


def test_threads_default_keeps_torchs_count(restore_threads):
    before = torch.get_num_threads()
    assert configure_threads(None) == before == torch.get_num_threads()


def test_threads_from_the_environment(restore_threads, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    assert configure_threads(None) == 1
    assert torch.get_num_threads() == 1


def test_explicit_threads_win_over_the_environment_for_the_rest_of_the_process(restore_threads, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    assert configure_threads(2) == 2 and torch.get_num_threads() == 2
    # a later call without a count (load_estimator makes one) keeps the explicit --threads
    assert configure_threads(None) == 2 and torch.get_num_threads() == 2


@pytest.mark.parametrize("value", ["0", "-3", "two", "1.5", " "])
def test_bad_environment_values_are_one_line_usage_errors(restore_threads, monkeypatch, value):
    monkeypatch.setenv(THREADS_ENV, value)
    if not value.strip():  # blank = unset
        assert configure_threads(None) == torch.get_num_threads()
        return
    with pytest.raises(UsageError, match=THREADS_ENV) as info:
        configure_threads(None)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_bad_explicit_count_is_a_usage_error(restore_threads):
    with pytest.raises(UsageError, match="--threads"):
        configure_threads(0)


FAULTS_PER_FRAME = """
import resource
import numpy as np
from gtacli.device import keep_freed_memory
applied = keep_freed_memory()
sizes = [400_000, 1_200_000, 3_000_000, 800_000, 2_000_000]  # bytes: the range of a 1080p overlay's buffers
def frame():
    buffers = [np.full(n, 7, np.uint8) for n in sizes]  # written, so every page is touched, then freed
    return sum(int(b[-1]) for b in buffers)
frame()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    frame()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.slow  # a real demo / subprocess run of several seconds: full suite only
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_stops_per_frame_buffers_faulting_in_fresh_pages(tmp_path):
    """In a real process: with glibc's defaults, buffers of a 1080p overlay's sizes (0.4-3 MB, allocated, written
    and freed every frame) fault in fresh pages every frame; after keep_freed_memory() the freed memory is
    reused. GTACLI_KEEP_FREED_MEMORY=0 keeps the defaults. (The renderer itself now allocates less and reuses its
    frame, so its own count varies from run to run with glibc's adaptive thresholds; the pattern here does not.)"""
    script = FAULTS_PER_FRAME
    faults = {}
    for setting in ("0", "1"):
        env = {**os.environ, device_module.KEEP_FREED_ENV: setting}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr[-2000:]
        applied, count = out.stdout.split()
        faults[setting] = (applied, float(count))
    if faults["1"][0] != "True":
        pytest.skip("not glibc: mallopt is not available")
    assert faults["0"][0] == "False"
    assert faults["1"][1] * 5 < faults["0"][1], faults
