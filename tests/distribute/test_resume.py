"""BackupAndRestore on 2 gloo processes: a run stopped mid-epoch resumes exactly, under DataParallel
and FSDP, although only rank 0 can see the backup folder (tests/distribute/_resume_script.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ._launch import torchrun
from ._train_script import HAS_FULLY_SHARD

KINDS = ["ddp", "fsdp"] if HAS_FULLY_SHARD else ["ddp"]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume")
    done = torchrun("_resume_script.py", str(out), TAPEFIT_DIST_TIMEOUT="60")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return [
        (
            dict(np.load(out / f"rank{r}" / "results.npz")),
            json.loads((out / f"rank{r}" / "files.json").read_text()),
        )
        for r in (0, 1)
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_stopped_mid_epoch_resumes_bit_for_bit_on_every_rank(ranks, kind):
    for results, _ in ranks:
        np.testing.assert_array_equal(results[f"{kind}_resumed"], results[f"{kind}_reference"])
        assert str(results[f"{kind}_resumed_history"]) == str(results[f"{kind}_reference_history"])


@pytest.mark.parametrize("kind", KINDS)
def test_only_rank_zero_publishes_and_the_index_names_the_mid_epoch_backup(ranks, kind):
    (_, files0), (_, files1) = ranks
    # stopped at epoch 2's third batch; backups every 2 batches: the last one after its second batch
    assert files0[kind] == [
        "backup-e00001-b0000000.safetensors",
        "backup-e00001-b0000002.safetensors",
        "backup-index.json",
    ]
    assert files0[f"{kind}_after"] == []  # deleted once the resumed run completed
    assert files1[kind] == [] and files1[f"{kind}_after"] == []
