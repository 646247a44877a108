"""py-spy's view of workload 1: samples of ``fit()`` and of the hand-written loop, sorted into cost
categories (forward compute, Layer.__call__ machinery, loss, backward, optimizer, metrics, data,
the fit loop) and turned into µs per step with the CPU time each target reports.

Called by ``python -m bench.profile_fit --what pyspy``; py-spy samples the process
``python -m bench.profile_fit --what fit-only`` (or ``hand-only``), which prints its CPU µs per
step on a ``SPIN`` line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter

__all__ = ["pyspy"]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _category(frames: list[str], fit: bool) -> str:
    """Sort one py-spy stack (root first) into a cost category."""
    text = ";".join(frames)
    if fit and "train_step (tapefit/trainers/trainer.py" not in text:
        for key, name in (
            ("data_adapters", "data (adapter gather)"),
            ("epoch_iterator", "data (adapter gather)"),
            ("logs.py", "EpochLogs"),
            ("callbacks/", "callbacks"),
        ):
            if key in text:
                return name
        return "fit loop and fit() setup"
    if "optimizers/" in text or "torch/optim/" in text:
        return "optimizer"
    if "backward (torch/" in text:
        return "backward (autograd)"
    if "tapefit/metrics/" in text or (not fit and "argmax" in text):
        return "metrics / loss tracker"
    if "tapefit/losses/" in text or "compile_utils.py" in text or "cross_entropy" in text:
        return "loss"
    if not fit:
        return "forward (nn.Module)" if "torch/nn/modules" in text else "loop body (gather, sums, zero_grad)"
    leaf_tapefit = next((f for f in reversed(frames) if "tapefit/" in f), "")
    if "tapefit/layers/" in text or "tapefit/models/" in text:
        if leaf_tapefit.split(" (")[0].split(".")[-1] == "call" and "layers/_calling.py" not in leaf_tapefit:
            return "forward compute (layer call bodies)"
        return "Layer.__call__ / Sequential machinery"
    return "train_step body"


def pyspy(steps: int, seconds: float = 12.0, rate: int = 250) -> str:
    """Sample fit() and the hand loop with py-spy; the share of samples per category, and µs/step."""
    exe = shutil.which("py-spy")
    if exe is None:
        return "\npy-spy is not installed (pip install py-spy); skipped."
    out = []
    for label in ("fit", "hand"):
        with tempfile.NamedTemporaryFile(suffix=".txt") as raw:
            cmd = [
                exe,
                "record",
                "-r",
                str(rate),
                "-f",
                "raw",
                "-o",
                raw.name,
                "--",
                sys.executable,
                "-m",
                "bench.profile_fit",
                "--what",
                f"{label}-only",
                "--steps",
                str(steps),
                "--seconds",
                str(seconds),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=_ROOT)
            us_per_step = next(
                (float(line.split()[2]) for line in done.stdout.splitlines() if line.startswith("SPIN")), None
            )
            counts: Counter[str] = Counter()
            with open(raw.name) as f:
                for line in f:
                    stack, _, n = line.rstrip().rpartition(" ")
                    frames = stack.split(";")
                    inside = (
                        "fit (tapefit/trainers/trainer.py" if label == "fit" else "epoch (bench/references.py"
                    )
                    if any(inside in fr for fr in frames):
                        counts[_category(frames, label == "fit")] += int(n)
        total = sum(counts.values())
        if not total or us_per_step is None:
            out.append(f"\n{label}: py-spy gave no samples ({done.stderr.strip()[-200:]})")
            continue
        title = "tapefit fit()" if label == "fit" else "hand-written loop"
        out.append(f"\n{title}: {us_per_step:.0f} CPU µs/step; py-spy samples ({total}) by category:")
        out.append(f"{'share':>7} {'~µs/step':>9}  category")
        for name, n in counts.most_common():
            out.append(f"{n / total:7.1%} {n / total * us_per_step:9.1f}  {name}")
    return "\n".join(out)
