"""No host-device sync in ``update_state`` or ``result``.

Meta tensors have shapes but no data: anything that needs a value on the host (``.item()``,
``float(t)``, ``bool(t)``, ``.cpu()``, ``.tolist()``, boolean-mask indexing, ``nonzero``, a
data-dependent ``bincount``) raises on them. A metric that updates and reports on the meta
device therefore never reads its data back, which is what keeps a training step free of syncs.
The other direction is guarded too: after a first update (which may cache constants on the
device), no host data may be copied to the device, since a blocking host-to-device copy waits
for the stream on CUDA.
"""

from __future__ import annotations

import pytest
import torch

import tapefit.metrics as tm

META = torch.device("meta")
N, C = 8, 4


def _t(*shape, dtype=torch.float32):
    return torch.empty(shape, dtype=dtype, device=META)


BINARY = (lambda: _t(N, C), lambda: _t(N, C))
CASES = {
    "Mean": (tm.Mean, (lambda: _t(N, C),)),
    "Sum": (tm.Sum, (lambda: _t(N),)),
    "Accuracy": (tm.Accuracy, (lambda: _t(N, 1), lambda: _t(N, 1))),
    "BinaryAccuracy": (tm.BinaryAccuracy, (lambda: _t(N, 1), lambda: _t(N, 1))),
    "CategoricalAccuracy": (tm.CategoricalAccuracy, BINARY),
    "SparseCategoricalAccuracy": (
        tm.SparseCategoricalAccuracy,
        (lambda: _t(N, dtype=torch.int64), lambda: _t(N, C)),
    ),
    "TopKCategoricalAccuracy": (lambda: tm.TopKCategoricalAccuracy(k=2), BINARY),
    "SparseTopK": (
        lambda: tm.SparseTopKCategoricalAccuracy(k=2),
        (lambda: _t(N, 1, dtype=torch.int32), lambda: _t(N, C)),
    ),
    "Precision": (tm.Precision, BINARY),
    "PrecisionThresholds": (lambda: tm.Precision(thresholds=[0.1, 0.5]), BINARY),
    "PrecisionEven": (lambda: tm.Precision(thresholds=[0.0, 0.5, 1.0]), BINARY),
    "PrecisionTopK": (lambda: tm.Precision(top_k=2, class_id=1), BINARY),
    "Recall": (tm.Recall, BINARY),
    "TruePositives": (tm.TruePositives, BINARY),
    "AUC": (tm.AUC, BINARY),
    "AUCPR": (lambda: tm.AUC(curve="PR", from_logits=True), BINARY),
    "AUCMultiLabel": (lambda: tm.AUC(multi_label=True, label_weights=[1.0, 2.0, 1.0, 1.0]), BINARY),
    "AUCThresholds": (lambda: tm.AUC(thresholds=[0.2, 0.3, 0.9], multi_label=True), BINARY),
    "F1Score": (tm.F1Score, BINARY),
    "F1Weighted": (lambda: tm.F1Score(average="weighted", threshold=0.5), BINARY),
    "FBetaMicro": (lambda: tm.FBetaScore(average="micro", beta=2.0), BINARY),
    "MeanSquaredError": (tm.MeanSquaredError, BINARY),
    "MeanAbsoluteError": (tm.MeanAbsoluteError, BINARY),
    "RootMeanSquaredError": (tm.RootMeanSquaredError, BINARY),
    "CosineSimilarity": (tm.CosineSimilarity, BINARY),
    "MeanIoU": (lambda: tm.MeanIoU(num_classes=C, ignore_class=0), (lambda: _t(N, dtype=torch.int64),) * 2),
    "OneHotMeanIoU": (lambda: tm.OneHotMeanIoU(num_classes=C), BINARY),
    "BinaryCrossentropy": (lambda: tm.BinaryCrossentropy(from_logits=True), BINARY),
    "CategoricalCrossentropy": (tm.CategoricalCrossentropy, BINARY),
    "SparseCategoricalCrossentropy": (
        tm.SparseCategoricalCrossentropy,
        (lambda: _t(N, dtype=torch.int64), lambda: _t(N, C)),
    ),
    "KLDivergence": (tm.KLDivergence, BINARY),
    "BinaryIoU": (tm.BinaryIoU, (lambda: _t(N, dtype=torch.int64), lambda: _t(N))),
}


@pytest.mark.filterwarnings("ignore:You are passing weight as `float`")
@pytest.mark.parametrize("name", sorted(CASES))
def test_update_and_result_never_read_data_back(name, on_meta, no_host_to_device):
    make, inputs = CASES[name]
    metric = make()
    assert all(v.device == META for v in metric.variables)
    metric.update_state(*[make_input() for make_input in inputs])
    metric.result()
    no_host_to_device()
    for weights in (None, _t(N), 2, 0.5):
        args = [make_input() for make_input in inputs]
        kwargs = {} if weights is None else {"sample_weight": weights}
        metric.update_state(*args, **kwargs)
        assert metric.result().device == META
    metric.reset_state()


def test_the_meta_check_catches_a_sync(on_meta):
    class Syncing(tm.Mean):
        def update_state(self, values, sample_weight=None):
            if bool((values > 0).any()):
                super().update_state(values)

    with pytest.raises((NotImplementedError, RuntimeError)):
        Syncing().update_state(_t(N))


def test_the_guard_catches_a_host_to_device_copy(on_meta, no_host_to_device):
    class Copying(tm.Mean):
        def update_state(self, values, sample_weight=None):
            super().update_state(values * torch.as_tensor(0.5, device=values.device))

    metric = Copying()
    no_host_to_device()
    with pytest.raises(AssertionError, match="host data copied"):
        metric.update_state(_t(N))
