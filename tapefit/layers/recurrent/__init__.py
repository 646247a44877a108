"""Recurrent layers with Keras's weights, masks and dropout: SimpleRNN, LSTM, GRU, Bidirectional;
and Keras's cell API: SimpleRNNCell, LSTMCell, GRUCell, StackedRNNCells and ``RNN(cell)``.

Weights are Keras's: ``kernel`` (features, gates * units), ``recurrent_kernel`` (units, gates *
units) and ``bias``, gates in Keras's order (LSTM i, f, c, o; GRU z, r, h). A sequence runs
through torch's fused kernel (``torch.lstm`` / ``torch.gru`` / ``torch.rnn_tanh``: cuDNN on
GPU) when Keras's cuDNN conditions hold (default activations, no recurrent dropout, GRU with
``reset_after``, and no mask or one that keeps an unbroken block of steps per row, as padding
before or after the data gives: the blocks are then packed to their lengths); otherwise through a
loop over timesteps that follows Keras's ``backend.rnn``: a masked step keeps the previous states
and repeats the previous output. Both give the same numbers.

Dropout follows Keras: one input mask and one recurrent mask per sequence, reused at every
step (one per gate when ``recurrent_dropout`` is set, as Keras's implementation 1 draws them).

As in Keras, a layer called with ``initial_state`` gets two tensor arguments, so the input's
mask is not passed to it: pass ``mask=`` explicitly to mask such a call.

The cells run one timestep with the same weights (names, shapes, gate order) and the same step
math as the layers (``_gated``), so ``RNN(LSTMCell(u))`` computes what ``LSTM(u)`` does, through
the step loop. ``RNN`` runs any cell: a layer with ``state_size`` and ``call(inputs, states)``
returning ``(output, new_states)``, as Keras users write custom cells; a list of cells is stacked.
Its masks, ``initial_state``, ``go_backwards`` and ``stateful`` follow the layers'. The cells draw
their dropout masks at their first training step and reuse them until reset, which ``RNN`` does
around each call: one mask per sequence, as Keras 3.

``stateful=True`` starts each call from the previous call's final states (detached, for batches
of the same size) until ``reset_state()``; shape probes (building a model) leave them alone.
"""

from .bidirectional import Bidirectional
from .cells import GRUCell, LSTMCell, SimpleRNNCell
from .gru import GRU
from .lstm import LSTM
from .rnn import RNN
from .simple_rnn import SimpleRNN
from .stacked_rnn_cells import StackedRNNCells

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Bidirectional",
    "GRUCell",
    "LSTMCell",
    "SimpleRNN",
    "SimpleRNNCell",
    "StackedRNNCells",
]
