"""Where tapefit's ``fit()`` spends time beyond the hand-written loop, on workload 1 (the MLP, batch 32).

Views, each printed as a table in µs per training step (process CPU time, which waiting
for a core on a shared machine does not inflate; torch runs on one thread):

- ``waterfall``: the hand-written step, then the same step with one tapefit piece swapped in at a
  time (its forward, its loss, its optimizer, its metrics, then ``train_step``, then ``fit()``),
  over the same distinct batches: each increment is what that piece costs in context;
- ``eval-waterfall``: the same for an evaluation step (forward, loss, metrics under ``no_grad``),
  each piece swapped in alone, then ``test_step`` and ``evaluate()``;
- ``parts``: every piece of a step timed alone (median of interleaved repeats), tapefit's next to
  the hand-written loop's equivalent, so their difference is that piece's overhead;
- ``cprofile``: ``fit()`` and the hand loop under cProfile, own time per function (cProfile adds
  its own cost per Python call, so use it to find functions, ``parts`` to size them);
- ``ops``: ``torch.profiler`` over training steps: aten ops launched per step and their CPU time;
- ``split``: ``fit()`` with the ``TimeSplit`` callback, as a user sees it (ms per step of compute,
  input pipeline and tapefit's overhead, wall time).

    python -m bench.profile_fit                 # all four
    python -m bench.profile_fit --what parts --steps 400
    py-spy record -f raw -o fit.txt -- python -m bench.profile_fit --what fit-only

``--what pyspy`` samples ``fit()`` and the hand loop with py-spy (when installed) and sorts the
samples into categories (forward compute, Layer.__call__ machinery, loss, backward, optimizer,
metrics, data, the fit loop); ``--what fit-only`` / ``hand-only`` just run one of them for a while
(py-spy's targets) and print their CPU µs per step.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "bench"

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from .profile_pyspy import pyspy  # noqa: E402
from .references import hand_fit  # noqa: E402
from .synthetic import mnist_like  # noqa: E402
from .workloads import build_tapefit, torch_twin  # noqa: E402

BATCH = 32


class _Setup:
    """The MLP three ways (tapefit fit, pieces of tapefit's step, the torch twin), on the same data."""

    def __init__(self, steps: int):
        _, x, y = mnist_like(steps * BATCH)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        self.steps = steps
        self.model = build_tapefit("mlp")
        self.model.fit(self.x, self.y, batch_size=BATCH, epochs=1, verbose=0)  # builds optimizer, metrics
        self.twin = torch_twin("mlp", self.model)
        self.opt = torch.optim.Adam(self.twin.parameters(), lr=1e-3, eps=1e-7)
        self.opt_foreach = torch.optim.Adam(self.twin.parameters(), lr=1e-3, eps=1e-7, foreach=True)
        self.hand_epoch = hand_fit("mlp", self.twin, self.x, self.y, BATCH)
        self.xb, self.yb = self.x[:BATCH].clone(), self.y[:BATCH].clone()

    def fit_epoch(self) -> None:
        self.model.fit(self.x, self.y, batch_size=BATCH, epochs=1, verbose=0)


def _per_call_us(fns: dict[str, Callable[[], Any]], calls: int, repeats: int) -> dict[str, float]:
    """Median µs per call of each function, measured in interleaved repeats of ``calls`` calls.

    Process CPU time, not wall time: on a shared machine time spent waiting for a core would
    otherwise swamp differences of a few µs (torch runs on one thread here).
    """
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.process_time()
            for _ in range(calls):
                fn()
            samples[name].append((time.process_time() - start) / calls * 1e6)
    return {k: statistics.median(v) for k, v in samples.items()}


def parts(steps: int, repeats: int = 7) -> list[tuple[str, float, float | None]]:
    """(piece, tapefit µs, hand-loop µs or None) per training step."""
    s = _Setup(steps)
    m, twin, opt, xb, yb = s.model, s.twin, s.opt, s.xb, s.yb
    variables = m.trainable_weights
    out_t, out_h = m(xb, training=True), twin(xb)
    loss_t, loss_h = m.compute_loss(y=yb, y_pred=out_t), F.cross_entropy(out_h, yb)
    (loss_t + loss_h).backward(retain_graph=True)
    grads = [v.grad for v in variables]
    correct = torch.zeros((), dtype=torch.int64)
    loss_sum = torch.zeros(())
    adapter_epoch = _adapter_batches(m, s.x, s.y)
    perm = torch.randperm(len(s.x))
    cursor = [0]

    def hand_gather() -> Any:
        i = cursor[0] = (cursor[0] + BATCH) % (len(perm) - BATCH)
        idx = perm[i : i + BATCH]
        return s.x[idx], s.y[idx]

    def tapefit_gather() -> Any:
        try:
            return next(adapter_epoch[0])
        except StopIteration:
            adapter_epoch[0] = _adapter_batches(m, s.x, s.y)[0]
            return next(adapter_epoch[0])

    def hand_metrics(out: torch.Tensor = out_h, loss: torch.Tensor = loss_h) -> None:
        nonlocal loss_sum, correct
        loss_sum += loss.detach()
        correct += (out.argmax(1) == yb).sum()

    def fwd_bwd_t() -> None:
        for v in variables:
            v.grad = None
        m.compute_loss(y=yb, y_pred=m(xb, training=True)).backward()

    def fwd_bwd_h() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(twin(xb), yb).backward()

    from tapefit.trainers.logs import EpochLogs

    logs = EpochLogs(m)
    results = m._lazy_metrics_object()
    cbs = m._callbacks(None, 0, 1, steps)
    batch = (xb, yb)

    def hand_step() -> None:
        opt.zero_grad(set_to_none=True)
        out = twin(xb)
        loss = F.cross_entropy(out, yb)
        loss.backward()
        opt.step()
        hand_metrics(out, loss)

    from tapefit.losses._tensors import _check_sparse_labels

    dense = m.layers[1]
    hidden = m.layers[0](xb)
    accuracy = m._compile_metrics.metrics[0] if hasattr(m._compile_metrics, "metrics") else None
    tracker_total = torch.zeros(())

    def hand_tracker() -> None:
        nonlocal tracker_total
        tracker_total += loss_t.detach()

    def adam_scalars() -> Any:
        # The per-step scalar math of tapefit's Adam._update_group (a replica, timed alone): six
        # tiny tensor ops on the step counter where torch's Adam uses Python floats.
        step = m.optimizer.iterations
        local_step = (step + 1).to(torch.float32)
        b1, b2 = torch.pow(0.9, local_step), torch.pow(0.999, local_step)
        return m.optimizer._current_learning_rate() * torch.sqrt(1 - b2) / (1 - b1)

    pairs: list[tuple[str, Callable[[], Any], Callable[[], Any] | None]] = [
        ("whole step (train_step / hand step, no data)", lambda: m.train_step(batch), hand_step),
        ("forward, training=True (model(x) / twin(x))", lambda: m(xb, training=True), lambda: twin(xb)),
        (
            "loss (compute_loss / F.cross_entropy)",
            lambda: m.compute_loss(y=yb, y_pred=out_t),
            lambda: F.cross_entropy(out_h, yb),
        ),
        ("forward + loss + backward", fwd_bwd_t, fwd_bwd_h),
        ("optimizer (optimizer.apply / Adam.step)", lambda: m.optimizer.apply(grads, variables), opt.step),
        (
            "optimizer (optimizer.apply / Adam(foreach=True).step)",
            lambda: m.optimizer.apply(grads, variables),
            s.opt_foreach.step,
        ),
        (
            "loss tracker update_state",
            lambda: m._loss_tracker.update_state(loss_t.detach(), sample_weight=BATCH),
            None,
        ),
        (
            "compiled metrics update_state / loss+correct sums",
            lambda: m._compile_metrics.update_state(yb, out_t, None),
            hand_metrics,
        ),
        ("model.trainable_weights", lambda: m.trainable_weights, None),
        (
            "zero grads (v.grad = None loop / zero_grad)",
            lambda: [setattr(v, "grad", None) for v in variables],
            lambda: opt.zero_grad(set_to_none=True),
        ),
        ("_lazy_metrics wrapper + EpochLogs.add", lambda: logs.add(results), None),
        (
            "callbacks: needs_train_batch_hooks check x2",
            lambda: (cbs.needs_train_batch_hooks, cbs.needs_train_batch_hooks),
            None,
        ),
        ("data: batch from the adapter / x[perm[i:i+32]]", tapefit_gather, hand_gather),
        ("metric result() (all metrics, when read)", lambda: [mm.result() for mm in m.metrics], None),
        (
            "Dense: layer(x) (Layer.__call__ + nn.Module.__call__) / layer.call(x)",
            lambda: dense(hidden),
            lambda: dense.call(hidden),
        ),
        (
            "Sequential: model(x) / model.call(x) (outer call: input check, device, losses)",
            lambda: m(xb, training=True),
            lambda: m.call(xb),
        ),
        (
            "_check_sparse_labels (label range check, CPU labels, every step)",
            lambda: _check_sparse_labels(yb, 10),
            None,
        ),
        (
            "Metric._follow_device (every update_state)",
            lambda: m._loss_tracker._follow_device((loss_t,), {}),
            None,
        ),
        (
            "loss tracker Mean.update_state / total += loss",
            lambda: m._loss_tracker.update_state(loss_t.detach(), sample_weight=BATCH),
            hand_tracker,
        ),
        (
            "accuracy update_state / correct += (argmax == y).sum()",
            (lambda: accuracy.update_state(yb, out_t)) if accuracy is not None else (lambda: None),
            lambda: (out_h.argmax(1) == yb).sum(),
        ),
        ("Adam step-counter scalar math (replica of _update_group's prologue)", adam_scalars, None),
    ]
    fns: dict[str, Callable[[], Any]] = {}
    for name, ours, theirs in pairs:
        fns["t:" + name] = ours
        if theirs is not None:
            fns["h:" + name] = theirs
    with torch.enable_grad():
        timed = _per_call_us(fns, calls=200, repeats=repeats)
    # Whole-epoch numbers: fit() versus the hand loop, and fit()'s fixed cost per call.
    epoch = _per_call_us({"fit": s.fit_epoch, "hand": s.hand_epoch}, calls=1, repeats=repeats)
    one = _Setup(1)
    fixed = _per_call_us({"fit1": one.fit_epoch, "hand1": one.hand_epoch}, calls=20, repeats=repeats)
    rows = [(name, timed["t:" + name], timed.get("h:" + name)) for name, _, _ in pairs]
    rows.insert(
        0, ("fit() per step / hand loop per step (whole epoch)", epoch["fit"] / steps, epoch["hand"] / steps)
    )
    rows.insert(
        1, ("fit() call on 1 step / hand loop on 1 step (fixed cost per call)", fixed["fit1"], fixed["hand1"])
    )
    return rows


def _adapter_batches(model: Any, x: torch.Tensor, y: torch.Tensor) -> list[Any]:
    from tapefit.trainers.data_adapters import get_adapter

    adapter = get_adapter(x, y, None, BATCH, True, None, torch.device("cpu"))
    return [iter(adapter.epoch())]


def waterfall(steps: int, repeats: int = 7) -> list[tuple[str, float]]:
    """(variant, µs per step) for cumulative swaps of tapefit pieces into the hand-written step."""
    s = _Setup(steps)
    m, twin = s.model, s.twin
    batches = [(s.x[i : i + BATCH], s.y[i : i + BATCH]) for i in range(0, len(s.x), BATCH)]
    variables = m.trainable_weights
    opt_on_model = torch.optim.Adam(variables, lr=1e-3, eps=1e-7)
    sums = {"loss": torch.zeros(()), "correct": torch.zeros((), dtype=torch.int64)}

    def hand_metrics(out: torch.Tensor, loss: torch.Tensor, yb: torch.Tensor) -> None:
        sums["loss"] += loss.detach()
        sums["correct"] += (out.argmax(1) == yb).sum()

    def ours_metrics(out: torch.Tensor, loss: torch.Tensor, yb: torch.Tensor) -> None:
        m._loss_tracker.update_state(loss, sample_weight=BATCH)
        m._compile_metrics.update_state(yb, out, None)

    def step(forward: str, loss_fn: str, optimizer: str, metrics: str) -> Callable[[], None]:
        net = twin if forward == "torch" else (lambda x: m(x, training=True))
        params = list(twin.parameters()) if forward == "torch" else variables
        opt = s.opt if forward == "torch" else opt_on_model

        def epoch() -> None:
            for xb, yb in batches:
                for p in params:
                    p.grad = None
                out = net(xb)
                loss = F.cross_entropy(out, yb) if loss_fn == "torch" else m.compute_loss(y=yb, y_pred=out)
                loss.backward()
                if optimizer == "torch":
                    opt.step()
                else:
                    m.optimizer.apply([p.grad for p in params], params)
                (hand_metrics if metrics == "torch" else ours_metrics)(out, loss, yb)

        return epoch

    def train_steps() -> None:
        for batch in batches:
            m.train_step(batch)

    variants = {
        "hand-written step (twin module, F.cross_entropy, torch Adam, on-device sums)": step(
            "torch", "torch", "torch", "torch"
        ),
        "+ tapefit model forward (Layer.__call__)": step("tapefit", "torch", "torch", "torch"),
        "+ tapefit compute_loss": step("tapefit", "tapefit", "torch", "torch"),
        "+ tapefit optimizer.apply (foreach Adam)": step("tapefit", "tapefit", "tapefit", "torch"),
        "+ tapefit loss tracker and compiled metrics": step("tapefit", "tapefit", "tapefit", "tapefit"),
        "= tapefit train_step": train_steps,
        "= tapefit fit() (data, logs, callbacks, fit setup)": s.fit_epoch,
    }
    timed = _per_call_us(variants, calls=1, repeats=repeats)
    return [(name, us / len(batches)) for name, us in timed.items()]


def eval_waterfall(steps: int, repeats: int = 7) -> list[tuple[str, float]]:
    """(variant, µs per batch) for the hand-written evaluation step with one tapefit piece swapped in
    at a time (each increment is that piece's cost in context), then tapefit's test_step and evaluate()."""
    s = _Setup(steps)
    m, twin = s.model, s.twin
    batches = [(s.x[i : i + BATCH], s.y[i : i + BATCH]) for i in range(0, len(s.x), BATCH)]
    sums = {"loss": torch.zeros(()), "correct": torch.zeros((), dtype=torch.int64)}

    def step(forward: str, loss_fn: str, metrics: str) -> Callable[[], None]:
        net = twin if forward == "torch" else (lambda x: m(x, training=False))

        def epoch() -> None:
            with torch.no_grad():
                for xb, yb in batches:
                    out = net(xb)
                    if loss_fn == "torch":
                        loss = F.cross_entropy(out, yb)
                    else:
                        loss = m.compute_loss(y=yb, y_pred=out)
                    if metrics == "torch":
                        sums["loss"] += loss * BATCH
                        sums["correct"] += (out.argmax(1) == yb).sum()
                    else:
                        m._loss_tracker.update_state(loss, sample_weight=BATCH)
                        m._compile_metrics.update_state(yb, out, None)

        return epoch

    def test_steps() -> None:
        with torch.no_grad():
            for batch in batches:
                m.test_step(batch)

    variants = {
        "hand-written evaluation step (twin module, F.cross_entropy, on-device sums)": step(
            "torch", "torch", "torch"
        ),
        "  with the tapefit model forward": step("tapefit", "torch", "torch"),
        "  with tapefit compute_loss": step("torch", "tapefit", "torch"),
        "  with the loss tracker and compiled metrics": step("torch", "torch", "tapefit"),
        "= tapefit test_step": test_steps,
        "= tapefit evaluate()": lambda: m.evaluate(s.x, s.y, batch_size=BATCH, verbose=0),
    }
    timed = _per_call_us(variants, calls=1, repeats=repeats)
    return [(name, us / len(batches)) for name, us in timed.items()]


def cprofile(steps: int, top: int = 25) -> str:
    """cProfile's own CPU time per function, in µs per training step, for fit() and the hand loop."""
    s = _Setup(steps)
    out = []
    for label, fn in (("tapefit fit()", s.fit_epoch), ("hand-written loop", s.hand_epoch)):
        fn()
        profiler = cProfile.Profile(time.process_time)  # CPU time: waiting for a core does not count
        profiler.enable()
        fn()
        profiler.disable()
        stats = pstats.Stats(profiler)
        entries = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
        total = sum(v[2] for v in stats.stats.values()) / steps * 1e6  # type: ignore[attr-defined]
        out.append(f"\n{label}: {total:.0f} µs/step under cProfile; own time per function:")
        out.append(f"{'µs/step own':>12} {'µs/step cum':>12} {'calls/step':>10}  function")
        for (path, line, func), (_, ncalls, tottime, cumtime, _) in entries[:top]:
            where = (
                f"{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}:{line}" if line else path
            )
            own, cum = tottime / steps * 1e6, cumtime / steps * 1e6
            out.append(f"{own:12.1f} {cum:12.1f} {ncalls / steps:10.1f}  {func} ({where})")
    return "\n".join(out)


def ops(steps: int = 50, top: int = 15) -> str:
    """aten ops per training step and their CPU time (torch.profiler), for train_step and the hand step."""
    from torch.profiler import ProfilerActivity, profile

    s = _Setup(steps + 5)
    batches = [(s.x[i : i + BATCH], s.y[i : i + BATCH]) for i in range(0, len(s.x), BATCH)]

    def hand_step(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        s.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(s.twin(batch[0]), batch[1])
        loss.backward()
        s.opt.step()

    out = []
    for label, fn in (("tapefit train_step", s.model.train_step), ("hand-written step", hand_step)):
        for batch in batches[:5]:
            fn(batch)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches[5:]:
                fn(batch)
        events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
        out.append(f"\n{label}: {sum(e.count for e in events) / steps:.0f} aten calls/step (all levels)")
        out.append(f"{'calls/step':>10} {'self µs/step':>13}  op")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
            out.append(f"{e.count / steps:10.1f} {e.self_cpu_time_total / steps:13.1f}  {e.key}")
    return "\n".join(out)


def split(steps: int, epochs: int = 3) -> str:
    """fit() with ``tapefit.callbacks.TimeSplit``: the user's view of compute, input pipeline and overhead."""
    from tapefit.callbacks import TimeSplit

    s = _Setup(steps)
    timer = TimeSplit(verbose=0)
    s.model.fit(s.x, s.y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[timer])
    out = [f"{'epoch':>5} {'step':>8} {'compute':>8} {'pipeline':>8} {'overhead':>8}  (ms/step, wall time)"]
    h = timer.history
    for i in range(epochs):
        out.append(
            f"{i + 1:5d} {h['step_ms'][i]:8.3f} {h['compute_ms'][i]:8.3f} {h['pipeline_ms'][i]:8.3f} "
            f"{h['overhead_ms'][i]:8.3f}"
        )
    return "\n".join(out)


def _spin(label: str, steps: int, seconds: float) -> None:
    """Run fit() or the hand loop for ``seconds``; print CPU µs per step (py-spy's target)."""
    s = _Setup(steps)
    epoch = s.fit_epoch if label == "fit" else s.hand_epoch
    epoch()
    done, cpu, deadline = 0, time.process_time(), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        epoch()
        done += steps
    print(f"SPIN {label} {(time.process_time() - cpu) / done * 1e6:.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_fit", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--what",
        default="waterfall,eval-waterfall,parts,cprofile,ops,pyspy,split",
        help="waterfall, eval-waterfall, parts, cprofile, ops, pyspy, split, fit-only, hand-only",
    )
    parser.add_argument("--steps", type=int, default=300, help="steps per epoch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--seconds", type=float, default=12.0, help="how long fit-only / hand-only / pyspy run"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    what = set(args.what.split(","))
    print(
        f"# MLP 784-128-10, batch {BATCH}, Adam, accuracy metric; torch {torch.__version__}, "
        f"{args.threads} thread(s), load average {os.getloadavg()[0]:.2f}"
    )
    for label in ("fit", "hand"):
        if f"{label}-only" in what:
            _spin(label, args.steps, args.seconds)
    if "waterfall" in what:
        print("\nµs per step, tapefit pieces swapped into the hand-written step one at a time:")
        print(f"{'µs/step':>9} {'increment':>9}  variant")
        previous = None
        for name, us in waterfall(args.steps):
            inc = "" if previous is None or name.startswith("=") else f"{us - previous:+9.1f}"
            print(f"{us:9.1f} {inc:>9}  {name}")
            previous = us if not name.startswith("=") else previous
    if "eval-waterfall" in what:
        print("\nµs per batch, tapefit pieces swapped into the hand-written evaluation step one at a time:")
        print(f"{'µs/batch':>9} {'vs hand':>9}  variant")
        rows = eval_waterfall(args.steps)
        for name, us in rows:
            print(f"{us:9.1f} {us - rows[0][1]:+9.1f}  {name}")
    if "parts" in what:
        print("\nµs per step, each piece alone (median of interleaved repeats):")
        print(f"{'tapefit':>9} {'hand':>9} {'extra':>9}  piece")
        for name, ours, theirs in parts(args.steps):
            extra = "" if theirs is None else f"{ours - theirs:9.1f}"
            print(f"{ours:9.1f} {'' if theirs is None else f'{theirs:9.1f}':>9} {extra:>9}  {name}")
    if "cprofile" in what:
        print(cprofile(args.steps))
    if "ops" in what:
        print(ops())
    if "pyspy" in what:
        print(pyspy(args.steps, args.seconds))
    if "split" in what:
        print("\nfit() with tapefit.callbacks.TimeSplit:")
        print(split(args.steps))


if __name__ == "__main__":
    main()
