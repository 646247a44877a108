"""A rank that raises ends every rank, with an error naming it, in bounded time."""

from __future__ import annotations

import pytest

from ._launch import plain_processes


@pytest.mark.parametrize("mode", ["raise", "caught"])
def test_a_failing_rank_stops_every_rank_and_is_named(mode):
    """With "caught", both ranks first catch an error of their own: it must not be blamed later."""
    # Plain processes (no torchrun agent to kill the survivor): rank 0 must notice by itself.
    (rc0, err0, t0), (rc1, err1, t1) = plain_processes(
        "_failing_script.py", timeout=90, TAPEFIT_DIST_TIMEOUT="30", TAPEFIT_TEST_MODE=mode
    )
    assert rc1 not in (0, None), err1[-3000:]
    assert "tapefit.distribute: rank 1 failed: ValueError: boom in step 3" in err1
    assert rc0 not in (0, None), err0[-3000:]
    assert "RankFailedError: rank 0 stopped because rank 1 failed: ValueError: boom in step 3" in err0
    assert max(t0, t1) < 60  # well under the 30 s collective timeout plus start-up


def test_a_hung_rank_is_reported_at_the_collective_timeout():
    (rc0, err0, t0), (rc1, _, t1) = plain_processes(
        "_failing_script.py", timeout=45, TAPEFIT_DIST_TIMEOUT="6", TAPEFIT_TEST_MODE="hang"
    )
    assert rc0 not in (0, None), err0[-3000:]
    assert "RankFailedError: rank 0: a collective operation with the other ranks failed" in err0
    assert "Collectives give up after 6 s" in err0
    # Rank 0 gives up at the 6 s timeout, well before rank 1 wakes from its 20 s sleep: compared
    # with rank 1's own exit in the same run, so a slow start-up on a loaded machine shifts both.
    assert t0 < t1 - 5
