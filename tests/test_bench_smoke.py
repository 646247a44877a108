"""The benchmark suite runs end to end on its smallest configuration (this checks the bench code,
never a timing): rows with positive samples/s, the Keras worker protocol, a memory probe, and
BENCHMARKS.md keeping its hand-written part when rewritten."""

from __future__ import annotations

import pytest

from bench import report as report_lib
from bench.run import run, select
from bench.timing import memory_probe


@pytest.fixture(scope="module")
def smallest() -> dict:
    return run(quick=True, only="mlp", steps=5, rounds=1, memory=False, log=lambda _: None)


def test_rows_have_positive_throughput_and_ratios(smallest):
    (workload,) = smallest["workloads"]
    rows = {r["contender"]: r for r in workload["rows"]}
    reference = rows["hand-written torch loop (fit)"]
    assert reference["reference"] and reference["ratio"] == pytest.approx(1.0)
    ours = rows["tapefit fit()"]
    assert ours["samples_per_s"] > 0 and ours["ratio"] > 0 and not ours["reference"]
    keras = rows["Keras 3 fit() (torch backend)"]
    assert keras.get("samples_per_s", 0) > 0 or keras["note"].startswith("skipped"), keras
    lightning = rows["Lightning Trainer.fit()"]
    assert lightning.get("samples_per_s", 0) > 0 or "lightning" in lightning["note"]
    assert smallest["meta"]["threads"] >= 1 and smallest["meta"]["cores"] >= 1


def test_table_and_rewrite_keep_the_hand_written_part(smallest, tmp_path):
    table = report_lib.markdown_table(smallest)
    assert "tapefit fit()" in table and "1.00x (reference)" in table
    md = tmp_path / "BENCHMARKS.md"
    old = f"# Benchmarks\n\n{report_lib.BEGIN}\nold numbers\n{report_lib.END}\n\n## What costs time\nkept\n"
    md.write_text(old)
    report_lib.write(smallest, root=str(tmp_path))
    text = md.read_text()
    assert "old numbers" not in text and "tapefit fit()" in text
    assert text.endswith("## What costs time\nkept\n")
    assert (tmp_path / "bench" / "results.json").stat().st_size > 0


def test_memory_probe_sees_an_allocation():
    import numpy as np
    import torch

    probe = memory_probe(lambda: int(np.ones(8 * 2**20).sum()), torch.device("cpu"))  # 64 MiB
    assert probe["peak_mib"] - probe["before_mib"] > 50


def test_only_rejects_unknown_names():
    assert [w.name for w in select("mlp*")][:2] == ["mlp", "mlp_custom"]
    with pytest.raises(SystemExit, match="matches no workload"):
        select("nope")


def test_ratios_are_taken_against_the_named_contender():
    import torch

    from bench.run import _rows
    from bench.suite import Workload
    from bench.timing import Contender, Measurement

    contenders = [Contender(n, lambda: 0, torch.device("cpu"), reference=n == "a") for n in "abc"]
    runs = {  # samples/s per round: a 100, 100; b 50, 200; c 100, 100
        "a": [Measurement(100, 1.0, 1.0), Measurement(100, 1.0, 1.0)],
        "b": [Measurement(100, 2.0, 2.0), Measurement(200, 1.0, 1.0)],
        "c": [Measurement(100, 1.0, 1.0), Measurement(100, 1.0, 1.0)],
    }
    rows = {r["contender"]: r for r in _rows(Workload("w", "t"), contenders, runs, {"c": "b"})}
    assert rows["b"]["ratio_range"] == pytest.approx([0.5, 2.0]) and "against" not in rows["b"]
    assert rows["c"]["against"] == "b" and rows["c"]["ratio_range"] == pytest.approx([0.5, 2.0])
    assert rows["c"]["note"] == "ratio vs b"


@pytest.fixture(scope="module")
def airbench_rows() -> dict:
    report = run(quick=True, only="airbench", steps=1, rounds=1, memory=False, log=lambda _: None)
    (workload,) = report["workloads"]
    return {r["contender"]: r for r in workload["rows"]}


def test_airbench_runs_the_hand_loop_and_fit_and_skips_cuda_variants(airbench_rows):
    import torch

    names = list(airbench_rows)
    assert names[0].startswith("hand-written torch loop, channels_last") and names[1] == "tapefit fit()"
    reference, ours = airbench_rows[names[0]], airbench_rows["tapefit fit()"]
    assert reference["reference"] and reference["ratio"] == pytest.approx(1.0)
    assert ours["samples_per_s"] > 0 and ours["ratio"] > 0, (
        ours
    )  # a failed twin check would skip the reference
    pairs = {
        "tapefit fit(), jit_compile=True": "hand-written torch loop + torch.compile(model)",
        "tapefit fit(), mixed_bfloat16 policy": "hand-written torch loop + bf16 autocast",
    }
    for ours_name, hand_name in pairs.items():
        assert airbench_rows[ours_name]["against"] == hand_name
        if not torch.cuda.is_available():
            for name in (ours_name, hand_name):
                assert "samples_per_s" not in airbench_rows[name]
                assert airbench_rows[name]["note"].endswith("skipped: needs CUDA")


def test_airbench_twin_computes_the_tapefit_network():
    import torch

    from bench import airbench

    model = airbench.build_tapefit()
    twin = airbench.torch_twin(model)
    trained = sum(p.numel() for p in twin.parameters() if p.requires_grad)
    assert sum(w.numel() for w in model.trainable_weights) == trained == 1_972_792 - 1_152  # BN scales frozen
    x = torch.rand(4, 32, 32, 3)
    airbench.check_twin(model, twin, x)  # raises when they differ
    with torch.no_grad():
        twin.head.weight.mul_(2)
    with pytest.raises(RuntimeError, match="differs"):
        airbench.check_twin(model, twin, x)


def test_mixed_precision_trains_each_policy_and_keeps_float32_weights(tmp_path):
    import torch

    from bench import mixed_precision as mp

    report = mp.run(n_train=100, n_test=50, epochs=2, batch=50, data="synthetic", log=lambda _: None)
    rows = {r["policy"]: r for r in report["rows"]}
    assert list(rows) == list(mp.POLICIES)
    for policy in ("float32", "mixed_bfloat16"):
        row = rows[policy]
        assert row["weights"] == ["float32"] and row["samples_per_s"] > 0 and 0 <= row["accuracy"] <= 1, row
    assert rows["float32"]["speedup"] == pytest.approx(1.0) and rows["float32"]["optimizer"] == "SGD"
    if not torch.cuda.is_available():
        assert rows["mixed_float16"]["note"].startswith("skipped: float16 needs CUDA")
    table = mp.markdown(report)
    assert "| mixed_bfloat16 | SGD |" in table and "synthetic, learnable" in table

    md = tmp_path / "BENCHMARKS.md"
    md.write_text(f"# B\n\n{report_lib.BEGIN}\ngen\n{report_lib.END}\n\n## Prose\nkept\n")
    report_lib.write_section(mp.SECTION, table, root=str(tmp_path))
    report_lib.write_section(mp.SECTION, "second", root=str(tmp_path))
    text = md.read_text()
    begin, end = "<!-- BEGIN mixed-precision -->", "<!-- END mixed-precision -->"
    assert (
        text
        == f"# B\n\n{report_lib.BEGIN}\ngen\n{report_lib.END}\n\n{begin}\nsecond\n{end}\n\n## Prose\nkept\n"
    )


def test_learnable_cifar_is_shaped_like_seed_003_data():
    import numpy as np

    from bench.mixed_precision import learnable_cifar

    x_train, y_train, x_test, y_test = learnable_cifar(2000, 100)
    assert (
        x_train.shape == (2000, 32, 32, 3)
        and x_test.shape == (100, 32, 32, 3)
        and x_train.dtype == np.float32
    )
    assert (
        y_train.shape == (2000, 1) and y_train.dtype == np.int64 and set(np.unique(y_train)) == set(range(10))
    )
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0

    def spread(labels: np.ndarray) -> float:  # how far the per-class mean images lie apart
        return float(np.stack([x_train[labels == c].mean(axis=0) for c in range(10)]).std(axis=0).mean())

    # The class signal is there: the class means lie far further apart than with shuffled labels.
    labels = y_train[:, 0]
    assert spread(labels) > 2 * spread(np.random.default_rng(1).permutation(labels))
