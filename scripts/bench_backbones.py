"""Backbone benchmark: training-step time and memory against the GRU, acting latency, event throughput.

    python -m scripts.bench_backbones [--quick] [--lengths 64 256 1024 4096] [--batch 16] [--width 128]
        [--repeats 5] [--max-seconds 60] [--events 65536] [--chunk 1024] [--out benchmarks/out/backbones.json]
        [--backbones gru mamba] [--mamba-chunks 0 16 64]

Every backbone of ``BACKBONES`` (or those of ``--backbones``, the GRU always; sizes from
``configs/defaults.yaml``; S5, Mamba and EventS5 once per ``scan_impl``, Mamba also once per
``--mamba-chunks`` value, 0 meaning the whole sequence at once) is timed on one jitted training
step, ``value_and_grad`` of ``mean(ys**2)`` over ``scan`` of a time-major ``[T, B, width]`` batch
with resets (EventS5 also gets random intervals ``dt``). Times are medians of ``--repeats`` calls after a warm-up call, compile excluded. Memory is
what XLA assigns to the compiled step (``memory_analysis()``: arguments + outputs + temporaries),
not the process RSS. A case is skipped, with a note, when its compiled memory exceeds
``--max-memory-gib`` (default: half the available RAM) or its time exceeds ``--max-seconds`` (also
predicted from the previous length, linearly in T). Then: latency of one jitted ``step`` (acting)
at batch 1 and 16, and EventS5 events/s on one stream, a jitted ``step`` called from Python per
event versus ``scan`` and ``scan_chunked`` over ``--events`` events. Prints markdown tables and
writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp

from configs.loader import load_config
from world_models.backbones import BACKBONES, EventS5

SSM_BACKBONES = ("s5", "mamba", "event_s5")  # one row per scan_impl
SCAN_IMPLS = ("sequential", "associative")
MIB = 2**20


class Variant(NamedTuple):
    """One benchmarked configuration: registry name, ``scan_impl`` (or None) and constructor kwargs."""

    name: str
    scan_impl: str | None
    kwargs: dict[str, Any]

    @property
    def label(self) -> str:
        details = [] if self.scan_impl is None else [self.scan_impl]
        if self.name == "mamba" and "chunk_size" in self.kwargs:
            chunk = self.kwargs["chunk_size"]
            details.append(f"chunk {chunk}" if chunk else "whole")
        return self.name + (f" ({', '.join(details)})" if details else "")


class Built(NamedTuple):
    """A variant with its module and initialised parameters."""

    variant: Variant
    module: flax.linen.Module
    params: Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=128, help="model width and input dimension")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per training case")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time budget of one case")
    parser.add_argument("--max-memory-gib", type=float, help="default: half of MemAvailable")
    parser.add_argument("--acting-calls", type=int, default=300, help="timed step calls (acting, events)")
    parser.add_argument("--events", type=int, default=2**16, help="stream length for scan/scan_chunked")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--quick", action="store_true", help="T in {64, 256}, fewer repeats and events")
    parser.add_argument("--backbones", nargs="+", choices=sorted(BACKBONES), default=list(BACKBONES),
                        help="backbones to run (default: all); the GRU, base of the ratios, always runs")
    parser.add_argument("--mamba-chunks", type=int, nargs="+",
                        help="Mamba chunk_size values, one row each (0: whole sequence; default: the config's)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/backbones.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths, args.repeats, args.acting_calls, args.events = [64, 256], 3, 100, 2**14
    if args.max_memory_gib is None:
        args.max_memory_gib = available_memory_gib() / 2
    return args


def available_memory_gib() -> float:
    """``MemAvailable`` from ``/proc/meminfo`` (16 GiB where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 16.0


def variants(
    config: dict[str, dict[str, Any]], names: list[str] | None = None, mamba_chunks: list[int] | None = None
) -> list[Variant]:
    """The GRU and ``names`` (default: every registered backbone), the SSMs once per ``scan_impl``,
    Mamba also once per ``mamba_chunks`` value (default: the config's ``chunk_size``)."""
    rows = []
    for name in (name for name in BACKBONES if name == "gru" or names is None or name in names):
        impls = SCAN_IMPLS if name in SSM_BACKBONES else (None,)
        chunks = [{"chunk_size": chunk} for chunk in mamba_chunks or []] if name == "mamba" else []
        for impl in impls:
            for chunk in chunks or [{}]:
                kwargs = dict(config.get(name, {}), **({} if impl is None else {"scan_impl": impl}), **chunk)
                rows.append(Variant(name, impl, kwargs))
    return rows


def make_inputs(length: int, batch: int, width: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``xs [T, B, D]`` normal, ``resets [T, B]`` (first step and ~1/64 of the rest), ``dt [T, B]``."""
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    xs = jax.random.normal(keys[0], (length, batch, width))
    resets = (jax.random.uniform(keys[1], (length, batch)) < 1 / 64).at[0].set(True)
    return xs, resets, jax.random.exponential(keys[2], (length, batch))


def sequence_outputs(module: flax.linen.Module, xs: jax.Array, resets: jax.Array, dt: jax.Array) -> jax.Array:
    """``ys [T, B, H]`` of ``scan`` from the initial state (``dt`` used by time-aware backbones only)."""
    carry = module.initial_state(xs.shape[1])
    if isinstance(module, EventS5):
        return module.scan(carry, xs, resets, dt)[1]
    return module.scan(carry, xs, resets)[1]


def build(variant: Variant, width: int) -> Built:
    """The module and its parameters (initialised on a two-step sequence: they do not depend on T)."""
    module = BACKBONES[variant.name](features=width, **variant.kwargs)
    params = module.init(jax.random.PRNGKey(1), *make_inputs(2, 1, width), method=sequence_outputs)
    return Built(variant, module, params)


def training_step(module: flax.linen.Module) -> Callable:
    """``(params, xs, resets, dt) -> (loss, grads)`` of ``mean(ys**2)``, not yet jitted."""

    def loss(params, xs, resets, dt):
        ys = module.apply(params, xs, resets, dt, method=sequence_outputs)
        return jnp.mean(ys**2)

    return jax.value_and_grad(loss)


def compiled_memory(compiled: Any) -> dict[str, int] | None:
    """Bytes XLA assigns to a compiled executable, or None where the backend does not say."""
    try:
        stats = compiled.memory_analysis()
    except (AttributeError, NotImplementedError, RuntimeError):
        return None
    if stats is None:
        return None
    parts = {
        "argument_bytes": stats.argument_size_in_bytes, "output_bytes": stats.output_size_in_bytes,
        "temp_bytes": stats.temp_size_in_bytes, "alias_bytes": stats.alias_size_in_bytes,
    }
    parts["total_bytes"] = parts["argument_bytes"] + parts["output_bytes"] + parts["temp_bytes"]
    return parts


def timed_call(function: Callable, *args: Any) -> tuple[float, Any]:
    """Seconds of one call, waited for with ``block_until_ready``, and its result."""
    start = time.perf_counter()
    result = jax.block_until_ready(function(*args))
    return time.perf_counter() - start, result


def is_out_of_memory(error: Exception) -> bool:
    return isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in str(error) or "out of memory" in str(error).lower()


def bench_training_case(
    module: flax.linen.Module, params: Any, length: int, args: argparse.Namespace, predicted_s: float | None
) -> dict[str, Any]:
    """Compile, check memory, warm up and time one training step; ``skipped`` says why not."""
    row: dict[str, Any] = {"T": length}
    if predicted_s is not None and 2 * predicted_s > args.max_seconds:
        return row | {"skipped": f"predicted {predicted_s:.1f} s/step, 2 calls > {args.max_seconds:.0f} s"}
    xs, resets, dt = make_inputs(length, args.batch, args.width)
    try:
        start = time.perf_counter()
        compiled = jax.jit(training_step(module)).lower(params, xs, resets, dt).compile()
        row["compile_s"] = time.perf_counter() - start
        row["memory"] = compiled_memory(compiled)
        if row["memory"] and row["memory"]["total_bytes"] > args.max_memory_gib * 2**30:
            needed = row["memory"]["total_bytes"] / 2**30
            return row | {"skipped": f"needs {needed:.1f} GiB > {args.max_memory_gib:.1f} GiB"}
        warmup_s, _ = timed_call(compiled, params, xs, resets, dt)
        spent = time.perf_counter() - start
        if spent + warmup_s > args.max_seconds:
            return row | {"skipped": f"{warmup_s:.1f} s/step, {spent:.0f} s spent: over {args.max_seconds:.0f} s"}
        repeats = max(1, min(args.repeats, int((args.max_seconds - spent) / warmup_s)))
        times = [timed_call(compiled, params, xs, resets, dt)[0] for _ in range(repeats)]
    except Exception as error:  # only out-of-memory errors are skipped; anything else is a bug
        if not is_out_of_memory(error):
            raise
        return row | {"skipped": "out of memory"}
    return row | {"seconds": statistics.median(times), "repeats": repeats}


def bench_training(args: argparse.Namespace, models: list[Built]) -> list[dict[str, Any]]:
    """Training-step rows for every variant and length, each with ``x_gru`` ratios."""
    rows = []
    for variant, module, params in models:
        previous: tuple[int, float] | None = None
        for length in sorted(args.lengths):
            predicted = None if previous is None else previous[1] * length / previous[0]
            row = bench_training_case(module, params, length, args, predicted)
            rows.append({"backbone": variant.name, "scan_impl": variant.scan_impl, "label": variant.label} | row)
            print(f"  train {variant.label:<26} T={length:<5} {describe(rows[-1])}", flush=True)
            if "seconds" in row:
                previous = (length, row["seconds"])
    add_gru_ratios(rows)
    return rows


def describe(row: dict[str, Any]) -> str:
    if "skipped" in row:
        return f"skipped: {row['skipped']}"
    memory = f", {row['memory']['total_bytes'] / MIB:.0f} MiB" if row.get("memory") else ""
    return f"{row['seconds'] * 1e3:.1f} ms{memory}"


def add_gru_ratios(rows: list[dict[str, Any]]) -> None:
    """``x_gru_time`` and ``x_gru_memory``: each row over the GRU row of the same T."""
    gru = {row["T"]: row for row in rows if row["backbone"] == "gru" and "seconds" in row}
    for row in rows:
        base = gru.get(row["T"])
        if base is None or "seconds" not in row:
            continue
        row["x_gru_time"] = row["seconds"] / base["seconds"]
        if row.get("memory") and base.get("memory"):
            row["x_gru_memory"] = row["memory"]["total_bytes"] / base["memory"]["total_bytes"]


def acting_step(module: flax.linen.Module) -> Callable:
    """Jitted ``(params, carry, x, reset, dt) -> (carry, y)``: one ``step`` (``dt`` for EventS5 only)."""

    def step(params, carry, x, reset, dt):
        if isinstance(module, EventS5):
            return module.apply(params, carry, x, reset, dt, method=module.step)
        return module.apply(params, carry, x, reset, method=module.step)

    return jax.jit(step)


def step_latencies(module: flax.linen.Module, params: Any, batch: int, calls: int) -> list[float]:
    """Seconds of each of ``calls`` step calls from Python, carry threaded, each output waited for."""
    step = acting_step(module)
    carry = module.apply(params, batch, method=module.initial_state)
    xs, resets, dt = make_inputs(calls + 1, batch, module.features)
    carry, _ = jax.block_until_ready(step(params, carry, xs[0], resets[0], dt[0]))  # compile
    latencies = []
    for index in range(1, calls + 1):
        seconds, (carry, _) = timed_call(step, params, carry, xs[index], resets[index], dt[index])
        latencies.append(seconds)
    return latencies


def bench_acting(args: argparse.Namespace, models: list[Built]) -> list[dict[str, Any]]:
    """Median ``step`` latency per backbone at batch 1 and 16, with ratios to the GRU."""
    rows = []
    for variant, module, params in models:
        if variant.name in (row["backbone"] for row in rows):
            continue  # step does not depend on scan_impl or chunk_size
        row: dict[str, Any] = {"backbone": variant.name}
        for batch in (1, 16):
            row[f"batch{batch}_us"] = statistics.median(
                step_latencies(module, params, batch, args.acting_calls)) * 1e6
        rows.append(row)
    for row in rows:
        for batch in (1, 16):
            row[f"batch{batch}_x_gru"] = row[f"batch{batch}_us"] / rows[0][f"batch{batch}_us"]
    return rows


def stream_throughput(module: flax.linen.Module, params: Any, mode: str, args: argparse.Namespace) -> float:
    """Seconds (median of 3, compile excluded) for ``scan`` or ``scan_chunked`` over one stream."""
    xs, resets, dt = make_inputs(args.events, 1, args.width)

    def run(params, xs, resets, dt):
        carry = module.apply(params, 1, method=module.initial_state)
        if mode == "scan":
            return module.apply(params, carry, xs, resets, dt, method=module.scan)[1]
        return module.apply(params, carry, xs, resets, dt, args.chunk, method=module.scan_chunked)[1]

    compiled = jax.jit(run).lower(params, xs, resets, dt).compile()
    return statistics.median(timed_call(compiled, params, xs, resets, dt)[0] for _ in range(3))


def bench_events(args: argparse.Namespace, models: list[Built]) -> list[dict[str, Any]]:
    """EventS5 events/s on one stream: per-event ``step`` calls, ``scan`` and ``scan_chunked``."""
    rows = []
    for variant, module, params in (built for built in models if built.variant.name == "event_s5"):
        if variant.scan_impl == SCAN_IMPLS[0]:
            seconds = sum(step_latencies(module, params, 1, args.acting_calls))
            rows.append({"mode": "step (jitted, called per event)", "scan_impl": None,
                         "events": args.acting_calls, "events_per_s": args.acting_calls / seconds})
        for mode in ("scan", "scan_chunked"):
            seconds = stream_throughput(module, params, mode, args)
            label = mode if mode == "scan" else f"scan_chunked (chunk {args.chunk})"
            rows.append({"mode": label, "scan_impl": variant.scan_impl, "events": args.events,
                         "events_per_s": args.events / seconds})
    for row in rows:
        row["x_step"] = row["events_per_s"] / rows[0]["events_per_s"]
    return rows


def training_table(rows: list[dict[str, Any]], key: str) -> str:
    """Markdown: one row per variant, one column per T; ``key`` is ``time`` or ``memory``."""
    lengths = sorted({row["T"] for row in rows})
    labels = list(dict.fromkeys(row["label"] for row in rows))
    cells = {(row["label"], row["T"]): training_cell(row, key) for row in rows}
    lines = ["| backbone | " + " | ".join(f"T={length}" for length in lengths) + " |",
             "| --- |" + " ---: |" * len(lengths)]
    lines += [f"| {label} | " + " | ".join(cells[label, length] for length in lengths) + " |" for label in labels]
    return "\n".join(lines)


def training_cell(row: dict[str, Any], key: str) -> str:
    if "skipped" in row:
        return f"skipped: {row['skipped']}"
    ratio = row.get(f"x_gru_{key}")
    suffix = f" ({ratio:.2f}x)" if ratio is not None else ""
    if key == "time":
        return f"{row['seconds'] * 1e3:.1f} ms{suffix}"
    return f"{row['memory']['total_bytes'] / MIB:.1f} MiB{suffix}" if row.get("memory") else "n/a"


def acting_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| backbone | batch 1 (µs) | x GRU | batch 16 (µs) | x GRU |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {row['backbone']} | {row['batch1_us']:.0f} | {row['batch1_x_gru']:.2f}x | "
              f"{row['batch16_us']:.0f} | {row['batch16_x_gru']:.2f}x |" for row in rows]
    return "\n".join(lines)


def events_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| mode | scan_impl | events | events/s | x step |", "| --- | --- | ---: | ---: | ---: |"]
    lines += [f"| {row['mode']} | {row['scan_impl'] or '-'} | {row['events']:,} | {row['events_per_s']:,.0f} | "
              f"{row['x_step']:.1f}x |" for row in rows]
    return "\n".join(lines)


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    device = jax.devices()[0]
    return {"jax": jax.__version__, "flax": flax.__version__, "backend": jax.default_backend(),
            "device": f"{device.platform}: {device.device_kind}", "cpus": os.cpu_count(),
            "machine": platform.platform(), "batch": args.batch, "width": args.width,
            "lengths": args.lengths, "repeats": args.repeats, "max_seconds": args.max_seconds,
            "max_memory_gib": args.max_memory_gib, "events": args.events, "chunk": args.chunk,
            "acting_calls": args.acting_calls, "backbones": args.backbones, "mamba_chunks": args.mamba_chunks}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    config = load_config()["backbones"]
    meta = metadata(args)
    print(f"JAX {meta['jax']}, backend {meta['backend']}, device {meta['device']}, {meta['cpus']} CPUs; "
          f"batch {args.batch}, width {args.width}, float32", flush=True)
    models = [build(variant, args.width) for variant in variants(config, args.backbones, args.mamba_chunks)]
    results = {"meta": meta, "backbone_kwargs": config}
    for section, bench in (("training", bench_training), ("acting", bench_acting), ("events", bench_events)):
        start = time.perf_counter()
        results[section] = bench(args, models)
        print(f"  {section}: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"\n### Training step (value_and_grad of mean(ys**2) over scan), B={args.batch}, width={args.width}")
    print(f"Median time of {args.repeats} calls, compile excluded (x GRU at the same T):\n")
    print(training_table(results["training"], "time"))
    print("\nXLA-assigned memory of the compiled step, arguments + outputs + temporaries "
          "(memory_analysis(); x GRU at the same T):\n")
    print(training_table(results["training"], "memory"))
    print(f"\n### Acting: one jitted step called from Python, median of {args.acting_calls} calls\n")
    print(acting_table(results["acting"]))
    if results["events"]:
        print("\n### EventS5 throughput on one stream (batch 1; x step: over per-event step calls)\n")
        print(events_table(results["events"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
