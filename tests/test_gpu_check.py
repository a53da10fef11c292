"""bench/gpu_check.py runs on a CPU at toy sizes (--smoke), so that a lent GPU's minutes are not lost
to a broken script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_gpu_check_smoke_on_cpu(parity_dir, tmp_path):
    for name in ("muq_small", "objective_small"):
        shutil.copytree(parity_dir / name, tmp_path / "parity" / name)
    cmd = [sys.executable, str(REPO_ROOT / "bench" / "gpu_check.py"), "--out", str(tmp_path / "out"), "--device",
           "cpu", "--smoke", "--parity", str(tmp_path / "parity"), "--phases", "parity,embed,pretrain,claims",
           "--data", str(tmp_path / "no-data")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["parity"]["hidden_states_ok"] and report["parity"]["objective_ok"]
    assert report["embed"]["best_audio_seconds_per_second"] > 0
    assert report["pretrain"]["flops_per_step"] > 0 and report["pretrain"]["step_seconds"] > 0
    assert "no prepared corpus" in report["claims"]["skipped"]
