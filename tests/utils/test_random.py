"""tapefit.utils.random: the global random states as one value, and the input pipeline's own stream."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tapefit.utils import random as tf_random


@pytest.fixture(autouse=True)
def _one_stream():
    yield
    tf_random.join_input_stream()


def _draw():
    return torch.rand(3), np.random.rand(2), random.random()


def test_state_round_trip_replays_every_generator():
    tf_random.set_random_seed(3)
    state = tf_random.get_rng_state()
    first = _draw()
    tf_random.set_rng_state(state)
    second = _draw()
    torch.testing.assert_close(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[2] == second[2]


def test_split_streams_give_the_input_the_shared_draws_and_the_model_per_rank_draws():
    tf_random.set_random_seed(5)
    expected_input = torch.rand(4)  # what one stream would draw next
    tf_random.set_random_seed(5)
    tf_random.split_input_stream(rank=0)
    with tf_random.input_stream():
        torch.testing.assert_close(torch.rand(4), expected_input)
    rank0_model = torch.rand(4)
    tf_random.set_random_seed(5)
    tf_random.split_input_stream(rank=1)
    with tf_random.input_stream():
        torch.testing.assert_close(torch.rand(4), expected_input)  # the same on every rank
    assert not torch.equal(torch.rand(4), rank0_model)  # but the model's draws differ per rank


def test_the_model_stream_does_not_move_the_input_stream():
    tf_random.set_random_seed(7)
    tf_random.split_input_stream(rank=0)
    with tf_random.input_stream():
        a = torch.rand(2)
    torch.rand(100)  # dropout, say
    with tf_random.input_stream():
        b = torch.rand(2)
    tf_random.set_random_seed(7)
    expected = torch.rand(4)
    torch.testing.assert_close(torch.cat([a, b]), expected)


@pytest.mark.parametrize("inside", [False, True])
def test_state_round_trip_covers_both_streams(inside):
    tf_random.set_random_seed(9)
    tf_random.split_input_stream(rank=1)
    if inside:
        with tf_random.input_stream():
            state = tf_random.get_rng_state()
    else:
        state = tf_random.get_rng_state()
    tensors, meta = tf_random.rng_state_to_tensors(state, "rng")
    with tf_random.input_stream():
        data_draw = torch.rand(3)
    model_draw = torch.rand(3)
    tf_random.set_rng_state(tf_random.rng_state_from_tensors(tensors, meta, "rng"))
    with tf_random.input_stream():
        torch.testing.assert_close(torch.rand(3), data_draw)
    torch.testing.assert_close(torch.rand(3), model_draw)


def test_without_a_split_the_input_stream_is_the_global_one():
    tf_random.set_random_seed(1)
    with tf_random.input_stream():
        a = torch.rand(2)
    tf_random.set_random_seed(1)
    torch.testing.assert_close(torch.rand(2), a)
    assert "input" not in tf_random.get_rng_state()
