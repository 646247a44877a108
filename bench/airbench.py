"""Workload ``airbench`` (issue 5, GPU): a CIFAR-10 ResNet of the airbench94 kind at batch 1024.

The network is airbench94's ``make_net`` (Keller Jordan, github.com/KellerJordan/cifar10-airbench):
a 2x2 convolution stem to 24 channels and GELU, then three groups of
``conv3x3 -> max-pool 2 -> BatchNorm -> GELU -> conv3x3 -> BatchNorm -> GELU`` of widths 64, 256
and 256 (convolutions without bias, BatchNorm without scale, momentum 0.6, epsilon 1e-12), a 3x3
max-pool to 1x1, a bias-free ``Dense(10)`` and a 1/9 logit scale; about 2.0M parameters, label
smoothing 0.2, SGD with Nesterov momentum 0.85 and weight decay.

Left out, since they change accuracy and not the per-step work measured here: the whitening
initialisation of the stem (here it is trained like the other convolutions; airbench freezes its
weights), the identity (dirac) initialisation, the 64x learning rate of BatchNorm biases, the
triangular learning-rate schedule, the lookahead EMA, flip/translate augmentation, test-time
augmentation, and float16 weights (airbench runs ``net.half()``; here weights stay float32 and
the bf16 rows use autocast). The data are random CIFAR-shaped tensors made on the device once.
Weight decay has the same coefficient in both, in torch's coupled form for the hand loop and
Keras's decoupled form (``w -= w * wd * lr``) for tapefit: the same work, not the same trajectory.

Contenders, each pair timed in the same interleaved rounds (the ratio column of a pair's second
row is taken against its first): the hand-written loop (channels_last, fused SGD on CUDA,
foreach on CPU) and tapefit ``fit`` eager; ``torch.compile`` of the hand loop's model and tapefit
with ``jit_compile=True``; bf16 autocast and ``mixed_bfloat16``. The last two pairs need CUDA and
are skipped rows elsewhere (``python -m bench.airbench --all-variants`` runs them on CPU too, to
check the code). cuDNN autotuning is switched on for the whole run, as airbench does.

Every contender runs once when it is built (a failure becomes a skipped row naming the error, so
one broken variant does not cost a GPU run) and twice more before the timed rounds: tapefit's
compiled train step recompiles on its first calls and whenever another model is built in the
process (seen on CPU with ``TORCH_LOGS=recompiles``), so it needs more warm-up than the others.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

import tapefit
from tapefit import layers

from .references import train_epoch
from .timing import Contender, Skipped

__all__ = ["TITLE", "batch_size", "build_tapefit", "torch_twin", "entries", "main"]

WIDTHS = (64, 256, 256)
STEM = 24  # airbench's whitening width: 2 * 3 * kernel_size**2
BN_MOMENTUM, BN_EPSILON = 0.6, 1e-12  # Keras's momentum convention; torch's is 1 - 0.6
LOGIT_SCALE = 1 / 9
LABEL_SMOOTHING = 0.2
MOMENTUM = 0.85
# airbench94's decoupled hyper-parameters (lr 11.5 and wd 0.0153 per 1024 examples) in torch's form.
_KILOSTEP = 1024 * (1 + 1 / (1 - MOMENTUM))
LEARNING_RATE = 11.5 / _KILOSTEP
WEIGHT_DECAY = 0.0153 * 1024 / _KILOSTEP / LEARNING_RATE
CLASSES = 10

TITLE = (
    "6. airbench94-style ResNet (stem 24, groups 64/256/256, conv-pool-BN-GELU, 2.0M params), "
    "random CIFAR-shaped data on the device, SGD-Nesterov, label smoothing 0.2, batch 1024 on CUDA "
    "(3 untimed runs per contender)"
)
_NEEDS_CUDA = "skipped: needs CUDA"


def batch_size(device: torch.device) -> int:
    """airbench's 1024 on CUDA; 16 elsewhere, so that a CPU run takes seconds."""
    return 1024 if device.type == "cuda" else 16


def build_tapefit(jit_compile: bool = False, policy: str = "float32", seed: int = 0) -> tapefit.Model:
    """The network as a tapefit ``Sequential`` under dtype ``policy``, compiled for one-hot labels."""
    previous = tapefit.mixed_precision.global_policy()
    tapefit.mixed_precision.set_global_policy(policy)
    try:
        tapefit.utils.set_random_seed(seed)
        stack: list[Any] = [
            tapefit.Input((32, 32, 3)),
            layers.Conv2D(STEM, 2, padding="valid"),
            layers.Activation("gelu"),
        ]
        for width in WIDTHS:
            stack += [
                layers.Conv2D(width, 3, padding="same", use_bias=False),
                layers.MaxPooling2D(2),
                layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, scale=False),
                layers.Activation("gelu"),
                layers.Conv2D(width, 3, padding="same", use_bias=False),
                layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, scale=False),
                layers.Activation("gelu"),
            ]
        stack += [layers.MaxPooling2D(3), layers.Flatten(), layers.Dense(CLASSES, use_bias=False)]
        stack.append(layers.Rescaling(LOGIT_SCALE))
        model = tapefit.Sequential(stack)
    finally:
        tapefit.mixed_precision.set_global_policy(previous)
    model.compile(
        optimizer=tapefit.optimizers.SGD(
            learning_rate=LEARNING_RATE, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY
        ),
        # Keras's sparse crossentropy has no label smoothing: tapefit gets one-hot labels.
        loss=tapefit.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=LABEL_SMOOTHING),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model


class _Group(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding="same", bias=False)
        self.norm1 = _batch_norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding="same", bias=False)
        self.norm2 = _batch_norm(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    """airbench's BatchNorm: the scale frozen at 1, only the bias trained."""
    norm = nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=1 - BN_MOMENTUM)
    norm.weight.requires_grad_(False)
    return norm


class _Net(nn.Module):
    """The network as a torch user writes it: NCHW modules, run in channels_last memory format."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, STEM, 2)
        widths = (STEM, *WIDTHS)
        self.groups = nn.Sequential(*(_Group(a, b) for a, b in zip(widths, widths[1:])))
        self.head = nn.Linear(WIDTHS[-1], CLASSES, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(F.gelu(self.stem(x)))
        return self.head(torch.flatten(F.max_pool2d(x, 3), 1)) * LOGIT_SCALE


def torch_twin(model: tapefit.Model) -> nn.Module:
    """A torch ``_Net`` holding ``model``'s weights (Keras kernel layouts turned into torch's)."""
    net = _Net()
    convs = [net.stem] + [c for g in net.groups for c in (g.conv1, g.conv2)]
    norms = [n for g in net.groups for n in (g.norm1, g.norm2)]
    kinds = {layers.Conv2D: convs, layers.BatchNormalization: norms, layers.Dense: [net.head]}
    queues = {k: list(v) for k, v in kinds.items()}
    with torch.no_grad():
        for layer in model.layers:
            queue = next((q for k, q in queues.items() if isinstance(layer, k)), None)
            if queue is None:
                continue
            target, w = queue.pop(0), [torch.from_numpy(a) for a in layer.get_weights()]
            if isinstance(target, nn.Conv2d):
                target.weight.copy_(w[0].permute(3, 2, 0, 1))
                if target.bias is not None:
                    target.bias.copy_(w[1])
            elif isinstance(target, nn.BatchNorm2d):  # scale=False: beta, moving mean, moving variance
                target.bias.copy_(w[0])
                target.running_mean.copy_(w[1])
                target.running_var.copy_(w[2])
            else:
                target.weight.copy_(w[0].T)
    if any(queues.values()):
        raise RuntimeError("bench.airbench: the tapefit model and its torch twin have different layers")
    return net.to(tapefit.config.get_device(), memory_format=torch.channels_last)


def check_twin(model: tapefit.Model, twin: nn.Module, x: torch.Tensor) -> None:
    """Raise unless the twin computes the tapefit model's function (in float32, without TF32)."""
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        twin.eval()
        with torch.no_grad():
            ours = model(x[:8], training=False).float()
            theirs = twin(x[:8].permute(0, 3, 1, 2)).float()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
    if not torch.allclose(ours, theirs, rtol=1e-3, atol=1e-4):
        diff = (ours - theirs).abs().max().item()
        raise RuntimeError(f"bench.airbench: the torch twin differs from the tapefit model by {diff:g}")


def _data(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x NHWC float32 in [0, 1], y int64, y one-hot float32)``, made on ``device`` from seed 0."""
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.rand((n, 32, 32, 3), generator=generator, device=device)
    y = torch.randint(0, CLASSES, (n,), generator=generator, device=device)
    return x, y, F.one_hot(y, CLASSES).float()


def _guarded(name: str, make: Callable[[], Contender], reference: bool) -> Callable[[], Contender]:
    """Build the contender and run it once; a failure becomes a skipped row that says why, so one
    broken variant does not cost a whole GPU run."""

    def build() -> Contender:
        try:
            contender = make()
            contender.measure()  # the first run compiles, autotunes and allocates
            return contender
        except Exception as e:  # reported in the row
            message = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")
            return Skipped(name, f"skipped: failed: {message[:300]}", reference)

    return build


def _hand(
    name: str,
    x: torch.Tensor,
    y: torch.Tensor,
    batch: int,
    compile_model: bool,
    autocast: torch.dtype | None,
    reference: bool,
) -> Callable[[], Contender]:
    device = x.device

    def make() -> Contender:
        model = build_tapefit()
        twin = torch_twin(model)
        check_twin(model, twin, x)
        opt = torch.optim.SGD(
            [p for p in twin.parameters() if p.requires_grad],
            lr=LEARNING_RATE,
            momentum=MOMENTUM,
            nesterov=True,
            weight_decay=WEIGHT_DECAY,
            **({"fused": True} if device.type == "cuda" else {"foreach": True}),
        )
        net = torch.compile(twin) if compile_model else twin

        def loss_fn(out: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(out, yb, label_smoothing=LABEL_SMOOTHING)

        work = train_epoch(net, opt, loss_fn, x.permute(0, 3, 1, 2), y, batch, autocast)
        return Contender(name, work, device, reference=reference)

    return make


def _tapefit(
    name: str, x: torch.Tensor, y_onehot: torch.Tensor, batch: int, jit_compile: bool, policy: str
) -> Callable[[], Contender]:
    def make() -> Contender:
        model = build_tapefit(jit_compile=jit_compile, policy=policy)

        def work() -> int:
            model.fit(x, y_onehot, batch_size=batch, epochs=1, verbose=0, shuffle=True)
            return len(x)

        return Contender(name, work, x.device)

    return make


def entries(settings: Any, all_variants: bool = False) -> list[Any]:
    """The workload's ``bench.suite.Entry`` list: three pairs (hand loop, tapefit), the second of
    each timed against the first; the CUDA-only pairs are skipped rows elsewhere unless
    ``all_variants``."""
    from .suite import Entry

    device = tapefit.config.get_device()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as airbench does; both contenders share the process
    batch = batch_size(device)
    x, y, y_onehot = _data(settings.steps["airbench"] * batch, device)
    full = device.type == "cuda" or all_variants
    sgd = "fused" if device.type == "cuda" else "foreach"
    # (hand loop, tapefit, torch.compile / jit_compile, autocast dtype, tapefit policy, runs here)
    pairs = [
        (
            f"hand-written torch loop, channels_last + {sgd} SGD",
            "tapefit fit()",
            False,
            None,
            "float32",
            True,
        ),
        (
            "hand-written torch loop + torch.compile(model)",
            "tapefit fit(), jit_compile=True",
            True,
            None,
            "float32",
            full,
        ),
        (
            "hand-written torch loop + bf16 autocast",
            "tapefit fit(), mixed_bfloat16 policy",
            False,
            torch.bfloat16,
            "mixed_bfloat16",
            full,
        ),
    ]
    out = []
    for i, (hand_name, ours_name, compiled, autocast, policy, runs) in enumerate(pairs):
        ref = i == 0
        if not runs:
            out += [
                Entry(hand_name, lambda n=hand_name: Skipped(n, _NEEDS_CUDA)),
                Entry(ours_name, lambda n=ours_name: Skipped(n, _NEEDS_CUDA), against=hand_name),
            ]
            continue
        hand = _hand(hand_name, x, y, batch, compiled, autocast, ref)
        ours = _tapefit(ours_name, x, y_onehot, batch, compiled, policy)
        out += [
            Entry(hand_name, _guarded(hand_name, hand, ref), reference=ref),
            Entry(ours_name, _guarded(ours_name, ours, False), against=hand_name if not ref else ""),
        ]
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.airbench [--all-variants] [--steps N] [--rounds N]``: this workload alone."""
    import dataclasses

    from .report import markdown_table
    from .run import measure_workloads, settings_for
    from .suite import WORKLOADS

    parser = argparse.ArgumentParser(prog="python -m bench.airbench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--all-variants", action="store_true", help="run the CUDA pairs on CPU too")
    parser.add_argument("--steps", type=int, help="batches per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurements per contender")
    args = parser.parse_args(argv)
    settings = settings_for(steps=args.steps, rounds=args.rounds)
    workload = next(w for w in WORKLOADS if w.name == "airbench")
    workload = dataclasses.replace(workload, entries=lambda s: entries(s, args.all_variants))
    print(markdown_table({"workloads": measure_workloads([workload], settings, memory=False, log=print)}))


if __name__ == "__main__":
    main()
