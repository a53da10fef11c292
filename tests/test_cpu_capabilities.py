"""The parity tests under other CPUs' vector code: a tolerance that holds on this CPU's kernels only
(a float32 rounding that flips with AVX2 against scalar code) fails here, not on a user's machine.

Every test that reads ../shared/parity is marked ``parity`` (tests/conftest.py); this test runs them
again in a subprocess with ``ATEN_CPU_CAPABILITY`` set to ``default`` (scalar kernels) and ``avx2``,
and ``avx512`` where the CPU has it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import PARITY_DIR, REPO_ROOT

# The parity tests that replay numbers; the app's and the GPU script's tests only load the fixtures.
PARITY_TESTS = ("tests/hub/test_objective_parity.py", "tests/audio/test_mel.py", "tests/ssl/test_muq.py",
                "tests/tokenizer/test_mel_rvq.py", "tests/mulan/test_mulan_parity.py")


def _capabilities() -> list[str]:
    caps = ["default", "avx2"]
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if " avx512f " in flags and " avx512bw " in flags and " avx512vl " in flags and " avx512dq " in flags:
        caps.append("avx512")
    return caps


@pytest.mark.skipif(not PARITY_DIR.is_dir(), reason=f"parity fixtures not found at {PARITY_DIR}")
@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() == "DEFAULT" and not os.path.exists("/proc/cpuinfo"),
                    reason="no vector code to emulate")
@pytest.mark.parametrize("capability", _capabilities())
def test_parity_holds_under_other_vector_code(capability):
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                           capture_output=True, text=True, env=env, check=True)
    assert probe.stdout.strip() == capability.upper()  # the emulation took effect
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "parity", *PARITY_TESTS],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"ATEN_CPU_CAPABILITY={capability}:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary
