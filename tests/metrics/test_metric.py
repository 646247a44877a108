"""The Metric base class: custom subclasses, variables, reset, state_dict, devices, tracking."""

from __future__ import annotations

import copy

import pytest
import torch

import tapefit.metrics as tm
from tapefit import config
from tapefit.variables import Variable


class CategoricalTruePositives(tm.Metric):
    """The custom metric of Keras's "training and evaluation" guide, written with torch ops."""

    def __init__(self, name="categorical_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_weight(name="ctp", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = y_pred.argmax(dim=1).reshape(-1, 1)
        values = (y_true.to(torch.int32) == y_pred.to(torch.int32)).to(torch.float32)
        if sample_weight is not None:
            values = values * sample_weight.to(torch.float32).reshape(-1, 1)
        self.true_positives.assign_add(values.sum())

    def result(self):
        return self.true_positives

    def reset_state(self):
        self.true_positives.assign(0.0)


def test_custom_metric_from_the_keras_guide():
    m = CategoricalTruePositives()
    y_true = torch.tensor([[0], [1], [2], [1]])
    y_pred = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    assert float(m(y_true, y_pred)) == 2.0
    m.update_state(y_true, y_pred, sample_weight=torch.tensor([1.0, 0.5, 1.0, 1.0]))
    assert float(m.result()) == 3.5
    assert m.name == "categorical_true_positives" and m.dtype == "float32"
    assert [v.name for v in m.variables] == ["ctp"]
    m.reset_states()
    assert float(m.result()) == 0.0


def test_default_reset_state_reapplies_initializers_and_aggregation_is_kept():
    class TwoCounters(tm.Metric):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.low = self.add_variable(shape=(2,), initializer="ones", name="low", aggregation="mean")
            self.high = self.add_variable(shape=(), initializer=3.0, dtype="float64", name="high")

        def update_state(self, x):
            self.low.assign_add(x)
            self.high.assign(self.high * 2)

        def result(self):
            return self.low.sum() + self.high

    m = TwoCounters()
    assert m.name == "two_counters" and TwoCounters().name == "two_counters_1"
    m.update_state(torch.tensor([1.0, 2.0]))
    assert float(m.result()) == 11.0
    m.reset_state()
    assert m.low.tolist() == [1.0, 1.0] and float(m.high) == 3.0 and m.high.dtype == torch.float64
    assert [v.aggregation for v in m.variables] == ["mean", "sum"]
    assert all(isinstance(v, Variable) for v in m.variables)


def test_call_is_update_then_result_and_results_do_not_alias_state():
    m = tm.Mean()
    first = m([1.0, 3.0])
    second = m([5.0])
    assert float(first) == 2.0 and float(second) == 3.0
    total = tm.Sum()
    snapshot = total([2.0])
    total.update_state([5.0])
    assert float(snapshot) == 2.0 and float(total.result()) == 7.0


def test_forgetting_super_init_is_a_clear_error():
    class Broken(tm.Metric):
        def __init__(self):
            self.v = self.add_variable(shape=())

    with pytest.raises(RuntimeError, match="super\\(\\).__init__"):
        Broken()


def test_bad_aggregation_and_initializer_are_rejected():
    m = tm.Mean()
    with pytest.raises(ValueError, match="aggregation"):
        m.add_variable(shape=(), aggregation="max")
    with pytest.raises(ValueError, match="initializer"):
        m.add_variable(shape=(), initializer=object())


def test_metric_is_not_a_module_and_stays_out_of_model_state():
    model = torch.nn.Linear(2, 1)
    model.acc = tm.SparseCategoricalAccuracy()
    assert not isinstance(model.acc, torch.nn.Module)
    assert set(model.state_dict()) == {"weight", "bias"}
    assert all(p.shape != () for p in model.parameters())


def test_state_dict_round_trip_resumes_exactly():
    rng = torch.Generator().manual_seed(0)
    y_true, y_pred = torch.randint(0, 2, (20, 3), generator=rng), torch.rand(20, 3, generator=rng)
    for make in (
        lambda: tm.AUC(),
        lambda: tm.AUC(multi_label=True),
        lambda: tm.F1Score(),
        lambda: tm.F1Score(average="micro"),
        lambda: tm.Precision(thresholds=[0.3, 0.6]),
        lambda: tm.MeanIoU(num_classes=2),
    ):
        a = make()
        a.update_state(y_true[:10], (y_pred[:10] > 0.5).long() if isinstance(a, tm.MeanIoU) else y_pred[:10])
        state = a.state_dict()
        assert all(type(v) is torch.Tensor for v in state.values())
        b = make()
        b.load_state_dict(state)
        rest = (y_true[10:], (y_pred[10:] > 0.5).long() if isinstance(a, tm.MeanIoU) else y_pred[10:])
        a.update_state(*rest)
        b.update_state(*rest)
        torch.testing.assert_close(a.result(), b.result(), rtol=0, atol=0)


def test_state_dict_keys_and_strict_loading():
    m = tm.Mean(name="loss")
    m.update_state([2.0, 4.0])
    assert set(m.state_dict()) == {"total", "count"}
    with pytest.raises(KeyError, match="missing keys \\['count'\\]"):
        tm.Mean().load_state_dict({"total": torch.tensor(1.0)})
    result = tm.Mean().load_state_dict({"total": torch.tensor(1.0), "extra": torch.tensor(0.0)}, strict=False)
    assert result.missing_keys == ["count"] and result.unexpected_keys == ["extra"]
    with pytest.raises(ValueError, match="shape"):
        tm.Precision().load_state_dict({"true_positives": torch.zeros(3), "false_positives": torch.zeros(3)})


class _Pair(tm.Metric):
    """A metric holding other metrics, as Keras's MetricsList does."""

    def __init__(self):
        super().__init__(name="pair")
        self.first = tm.Mean(name="m")
        self.others = [tm.Sum(name="s")]

    def update_state(self, x):
        self.first.update_state(x)
        self.others[0].update_state(x)

    def result(self):
        return self.first.result() + self.others[0].result()


def test_held_metrics_are_tracked_reset_and_saved():
    pair = _Pair()
    pair.update_state([1.0, 3.0])
    assert len(pair.variables) == 3
    assert set(pair.state_dict()) == {"first.total", "first.count", "others.0.total"}
    twin = _Pair()
    twin.load_state_dict(pair.state_dict())
    assert float(twin.result()) == 6.0
    pair.reset_state()
    assert float(pair.result()) == 0.0


def test_state_follows_the_data_device_once():
    m = tm.SparseCategoricalAccuracy()
    assert m.variables[0].device == config.get_device()
    held = m.total
    m.update_state(torch.tensor([1, 0], device="meta"), torch.zeros(2, 3, device="meta"))
    assert all(v.device.type == "meta" for v in m.variables)
    assert m.total.device.type == "meta" and m.total is not held
    assert m.result().device.type == "meta"
    assert [v.aggregation for v in m.variables] == ["sum", "sum"]
    moved = m.total
    m.update_state(torch.tensor([1, 0], device="meta"), torch.zeros(2, 3, device="meta"))
    assert m.total is moved


def test_an_accelerator_tensor_wins_over_a_cpu_label():
    m = tm.SparseCategoricalAccuracy()
    m.update_state(torch.tensor([1, 0]), torch.zeros(2, 3, device="meta"))
    assert m.total.device.type == "meta"


def test_user_metric_attributes_are_rebound_when_moving():
    m = CategoricalTruePositives()
    m.update_state(torch.tensor([[0]], device="meta"), torch.zeros(1, 3, device="meta"))
    assert m.true_positives is m.variables[0] and m.true_positives.device.type == "meta"


def test_deepcopy_keeps_dtype_aggregation_and_independence():
    m = tm.Mean(dtype="float64")
    m.update_state([1.0, 2.0])
    clone = copy.deepcopy(m)
    clone.update_state([10.0])
    assert float(m.result()) == 1.5 and float(clone.result()) == pytest.approx(13 / 3)
    assert clone.total.dtype == torch.float64 and clone.total is clone.variables[0]
    assert [v.aggregation for v in clone.variables] == ["sum", "sum"]


def test_update_state_builds_no_autograd_graph():
    w = torch.ones(3, requires_grad=True)
    m = tm.Mean()
    m.update_state(w * 2)
    assert not m.total.requires_grad and m.result().grad_fn is None


def test_get_config_round_trip():
    for metric in (
        tm.Precision(thresholds=[0.2, 0.7], class_id=1, name="p"),
        tm.AUC(curve="PR", num_thresholds=9),
        tm.F1Score(average="macro", threshold=0.4),
        tm.MeanIoU(num_classes=3, ignore_class=0),
        tm.SparseTopKCategoricalAccuracy(k=3),
        tm.BinaryAccuracy(threshold=0.2),
    ):
        clone = type(metric).from_config(metric.get_config())
        assert clone.get_config() == metric.get_config()


@pytest.mark.parametrize("num_labels", [None, 1], ids=["learnt", "given"])
def test_multi_label_auc_names_a_prediction_that_is_not_rank_2(num_labels):
    auc = tm.AUC(multi_label=True, num_labels=num_labels)
    with pytest.raises(ValueError, match="must have rank 2 when `multi_label=True`. Found rank 1"):
        auc.update_state(torch.tensor([0.0, 1.0]), torch.tensor([0.2, 0.7]))
