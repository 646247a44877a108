"""Run the benchmark suite: every workload against its references, in one process, on the same data.

For each workload the contenders are built once, warmed up, then measured in interleaved rounds
(A B C, then C B A, ...) so that load from other processes on the machine hits them alike. A
row reports the median and best samples/s over the rounds and the median of the per-round
ratios to the workload's reference (the hand-written loop): a paired statistic, steadier than a
ratio of medians when the load drifts. Peak memory is measured afterwards, in a fresh process
per contender (max RSS; CUDA's peak allocation on a GPU).

    python -m bench                  # everything, 4-7 minutes on 2 cores; writes BENCHMARKS.md
    python -m bench --quick          # ~1 minute, prints the table
    python -m bench --only mlp,cnn   # chosen workloads (shell patterns allowed: 'mlp*')
    python -m bench --only airbench --section gpu-airbench   # its own BENCHMARKS.md section
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "bench"

import torch  # noqa: E402

import tapefit  # noqa: E402

from .references import REPO_ROOT, close_keras_worker  # noqa: E402
from .suite import WORKLOADS, Settings, Workload  # noqa: E402
from .timing import Contender, Measurement, memory_probe  # noqa: E402

__all__ = ["run", "main", "settings_for", "measure_workloads"]

_FULL_STEPS = {"mlp": 300, "cnn": 6, "airbench": 2}
_QUICK_STEPS = {"mlp": 100, "cnn": 2, "airbench": 2}
# airbench on CUDA: 48 batches of 1024, about one CIFAR-10 epoch (49,152 of 50,000 images).
_CUDA_STEPS = {"airbench": 48}
_CUDA_QUICK_STEPS = {"airbench": 12}


def settings_for(
    quick: bool = False,
    steps: int | None = None,
    rounds: int | None = None,
    threads: int | None = None,
    keras: bool = True,
) -> Settings:
    """The defaults of a full or ``quick`` run; ``steps`` (batches per measurement) overrides both models'."""
    base = dict(_QUICK_STEPS if quick else _FULL_STEPS)
    if tapefit.config.get_device().type == "cuda":
        base.update(_CUDA_QUICK_STEPS if quick else _CUDA_STEPS)
    if steps is not None:
        base = {k: steps for k in base}
    return Settings(
        steps=base,
        rounds=rounds if rounds is not None else (3 if quick else 5),
        warmup=1,
        threads=threads if threads is not None else 1,
        keras=keras,
        images=96 if quick else 500,
        pipeline_repeats=1 if quick else 5,
    )


def select(only: str | None) -> list[Workload]:
    """The workloads named by ``only`` (comma-separated names or shell patterns); all when None."""
    if not only:
        return list(WORKLOADS)
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    chosen = [w for w in WORKLOADS if any(fnmatch.fnmatchcase(w.name, p) for p in patterns)]
    if not chosen:
        names = ", ".join(w.name for w in WORKLOADS)
        raise SystemExit(f"bench: --only {only!r} matches no workload; the workloads are: {names}")
    return chosen


def _interleaved(
    contenders: list[Contender], rounds: int, warmup: int, log: Callable[[str], None]
) -> dict[str, list[Measurement]]:
    """Every round's measurement, per contender; the order reverses every round."""
    live = [c for c in contenders if not c.skipped]
    for c in live:
        for _ in range(warmup):
            c.measure()
    runs: dict[str, list[Measurement]] = {c.name: [] for c in live}
    for r in range(rounds):
        for c in live if r % 2 == 0 else live[::-1]:
            runs[c.name].append(c.measure())
        rates = ", ".join(
            f"{c.name} {runs[c.name][-1].samples / runs[c.name][-1].seconds:,.0f}" for c in live
        )
        log(f"    round {r + 1}/{rounds} (samples/s): {rates}")
    return runs


def _rows(
    workload: Workload,
    contenders: list[Contender],
    runs: dict[str, list[Measurement]],
    against: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One row per contender; ratios against the workload's reference, or against the contender
    named in ``against`` (measured in the same rounds)."""
    reference = next(c for c in contenders if c.reference).name
    against = against or {}
    rows = []
    for c in contenders:
        row: dict[str, Any] = {"contender": c.name, "reference": c.reference, "note": c.note}
        ref_name = against.get(c.name) or reference
        ref_runs = runs.get(ref_name)
        if ref_name != reference:
            row["against"] = ref_name
            row["note"] = "; ".join(filter(None, [f"ratio vs {ref_name}", c.note]))
        if c.name in runs and ref_runs:
            mine = runs[c.name]
            rates = [m.samples / m.seconds for m in mine]
            ratios = [m.samples / m.seconds / (r.samples / r.seconds) for m, r in zip(mine, ref_runs)]
            row.update(
                samples_per_s=statistics.median(rates),
                best_samples_per_s=max(rates),
                ratio=statistics.median(ratios),
                ratio_range=[min(ratios), max(ratios)],
                rounds=len(mine),
            )
            if workload.cpu_ratio and all(m.cpu_seconds > 0 for m in mine + ref_runs):
                cpu = [
                    m.samples / m.cpu_seconds / (r.samples / r.cpu_seconds) for m, r in zip(mine, ref_runs)
                ]
                row["cpu_ratio"] = statistics.median(cpu)
        rows.append(row)
    return rows


def _probe_command(workload: Workload, index: int, entry: Any, settings: Settings) -> list[str]:
    if entry.keras is not None:
        return [sys.executable, "-m", "bench.keras_worker", "--probe", json.dumps(entry.keras())]
    config = json.dumps({"workload": workload.name, "index": index, "settings": settings.__dict__})
    return [sys.executable, "-m", "bench.run", "--probe", config]


def _memory(
    workload: Workload,
    entries: list[Any],
    rows: list[dict[str, Any]],
    settings: Settings,
    log: Callable[[str], None],
) -> None:
    """Peak memory of every contender that ran, each in a fresh process; ratios to the reference's."""
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": REPO_ROOT}
    for index, (entry, row) in enumerate(zip(entries, rows)):
        if "samples_per_s" not in row:
            continue
        done = subprocess.run(
            _probe_command(workload, index, entry, settings),
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env=env,
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode or not lines:
            row["note"] = (row["note"] + "; " if row["note"] else "") + "memory probe failed"
            log(f"    memory probe of {entry.name} failed: {done.stderr.strip()[-300:]}")
            continue
        probe = json.loads(lines[-1])
        row["peak_mib"], row["before_mib"], row["memory_kind"] = (
            probe["peak_mib"],
            probe["before_mib"],
            probe["what"],
        )
    ref = next((r for r in rows if r["reference"] and "peak_mib" in r), None)
    for row in rows:
        if ref is not None and "peak_mib" in row:
            row["memory_ratio"] = row["peak_mib"] / ref["peak_mib"]


def _measure(
    workload: Workload, settings: Settings, memory: bool, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    if workload.direct is not None:
        return workload.direct(settings)
    assert workload.entries is not None
    entries = workload.entries(settings)
    contenders: list[Contender] = []
    try:
        for entry in entries:
            contenders.append(entry.make())
        warmup = settings.warmup if workload.warmup is None else workload.warmup
        runs = _interleaved(contenders, settings.rounds, warmup, log)
    finally:
        for c in contenders:
            c.close()
    rows = _rows(workload, contenders, runs, {e.name: e.against for e in entries if e.against})
    if memory and workload.memory:
        _memory(workload, entries, rows, settings, log)
    return rows


def measure_workloads(
    chosen: list[Workload], settings: Settings, memory: bool, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """``[{name, title, rows, seconds}]`` for each workload in ``chosen``, measured in turn."""
    results = []
    for workload in chosen:
        log(f"== {workload.name}: {workload.title}")
        t0 = time.perf_counter()
        rows = _measure(workload, settings, memory, log)
        log(f"    ({time.perf_counter() - t0:.0f} s)")
        results.append(
            {
                "name": workload.name,
                "title": workload.title,
                "rows": rows,
                "seconds": time.perf_counter() - t0,
            }
        )
    return results


def run(
    quick: bool = False,
    only: str | None = None,
    steps: int | None = None,
    rounds: int | None = None,
    threads: int | None = None,
    keras: bool = True,
    memory: bool | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure the selected workloads; returns ``{"meta": ..., "workloads": [{name, title, rows}]}``.

    Args:
        quick: Fewer steps and rounds (~1 minute), and no memory probes unless ``memory=True``.
        only: Comma-separated workload names or shell patterns (``"mlp*"``).
        steps: Batches per measurement for every model (overrides the defaults).
        rounds: Interleaved measurements per contender.
        threads: ``torch.set_num_threads`` for every contender (default 1: see BENCHMARKS.md).
        keras: Include the Keras contenders (they share one worker process).
        memory: Measure peak memory in fresh processes (default: on unless ``quick``).

    Example:
        >>> report = run(quick=True, only="mlp", steps=5, keras=False, memory=False)  # doctest: +SKIP
    """
    from .report import machine_info

    settings = settings_for(quick, steps, rounds, threads, keras)
    memory = (not quick) if memory is None else memory
    torch.set_num_threads(settings.threads)
    chosen = select(only)
    meta = machine_info(settings)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tapefit-bench-") as scratch:
        settings.scratch = scratch
        try:
            results = measure_workloads(chosen, settings, memory, log)
        finally:
            close_keras_worker()
    meta["seconds"] = time.perf_counter() - started
    meta["load_average_end"] = list(os.getloadavg())
    meta["memory_probes"] = memory
    return {"meta": meta, "workloads": results}


def _probe(config: dict[str, Any]) -> None:
    """In a fresh process: build one contender of one workload, run it twice, print peak memory."""
    settings = Settings(**config["settings"])
    torch.set_num_threads(settings.threads)
    workload = next(w for w in WORKLOADS if w.name == config["workload"])
    assert workload.entries is not None
    entry = workload.entries(settings)[config["index"]]
    contender = entry.make()
    print(json.dumps(memory_probe(contender._work, tapefit.config.get_device())))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about one minute: fewer steps and rounds")
    parser.add_argument(
        "--only", help="comma-separated workloads or patterns: " + ", ".join(w.name for w in WORKLOADS)
    )
    parser.add_argument("--steps", type=int, help="batches per measurement, for every model")
    parser.add_argument("--rounds", type=int, help="interleaved measurements per contender")
    parser.add_argument("--threads", type=int, help="torch threads for every contender (default 1)")
    parser.add_argument("--no-keras", action="store_true", help="leave out the Keras contenders")
    parser.add_argument(
        "--memory", action=argparse.BooleanOptionalAction, default=None, help="peak-memory probes"
    )
    parser.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write BENCHMARKS.md, bench/results.json and bench/results.png (default: full runs only)",
    )
    parser.add_argument(
        "--section",
        metavar="NAME",
        help="write this run into its own BENCHMARKS.md section NAME and bench/results-NAME.json "
        "(e.g. --only airbench --section gpu-airbench), leaving the generated block alone",
    )
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        _probe(json.loads(args.probe))
        return
    report = run(args.quick, args.only, args.steps, args.rounds, args.threads, not args.no_keras, args.memory)
    report["meta"]["command"] = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    from .report import markdown_table, write, write_report_section

    print()
    print(markdown_table(report))
    if args.section:
        for path in write_report_section(report, args.section):
            print(f"wrote {os.path.relpath(path)}")
        return
    write_files = (
        args.write if args.write is not None else not (args.quick or args.only or args.steps or args.rounds)
    )
    if write_files:
        for path in write(report):
            print(f"wrote {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
