"""The image decoder's transposed convolutions: flax's ``nn.ConvTranspose`` against ``ConvTranspose2x``.

    python -m scripts.bench_decoder                                  # 48x48x2, depth 16, batch 16 x 32
    python -m scripts.bench_decoder --image 64 64 3 --depth 32 --batch 1024

``world_models.nets.ConvDecoder`` upsamples with 4x4 stride-2 transposed convolutions. XLA computes
``nn.ConvTranspose`` as a convolution over the input dilated with zeros; ``ConvTranspose2x`` gives the
same output from the same parameters as one 3x3 convolution at the input's resolution and a
depth-to-space. For every transposed convolution of the decoder at ``--image`` and ``--depth``
(batch ``--batch`` images), this times both, forward alone and forward plus backward (gradients of
the parameters and the input), jitted, in turns, the median of ``--repeats`` calls after compiling;
checks that both give the same output; prints a table with the ratio and writes ``<--out>.json``.
The decoder takes ``ConvTranspose2x`` for every layer but the last, whose few output channels make
its kernel gradient the slower one on the CPU (the last row of the table).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from scripts.common import write_json
from world_models.nets import ConvTranspose2x, cnn_stages


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=int, nargs=3, default=[48, 48, 2], metavar=("H", "W", "C"))
    parser.add_argument("--depth", type=int, default=16, help="world_model.cnn_depth")
    parser.add_argument("--batch", type=int, default=512, help="images per call (replay batch size x length)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/out/decoder")
    return parser.parse_args(argv)


def decoder_layers(image: tuple[int, int, int], depth: int) -> list[tuple[int, int, int, int]]:
    """``(height, width, in, out)`` of each transposed convolution of ``ConvDecoder``, input side."""
    height, width, channels = image
    stages = cnn_stages((height, width))
    side = lambda size, stage: -(-size // 2 ** (stages - stage))  # rounded up, as the decoder starts
    widths = [depth * 2**stage for stage in reversed(range(stages))] + [channels]
    return [(side(height, index), side(width, index), widths[index], widths[index + 1]) for index in range(stages)]


def median_seconds(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Each function's median time over ``repeats`` calls, taken in turns, after one call to compile."""
    for function in functions.values():
        jax.block_until_ready(function())
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            jax.block_until_ready(function())
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def time_layer(height: int, width: int, channels: int, features: int, batch: int, repeats: int) -> dict:
    """Both layers on one random batch with the same parameters: times, and the largest difference."""
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, height, width, channels))
    layers = {"flax": nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME"),
              "2x": ConvTranspose2x(features)}
    params = layers["2x"].init(jax.random.PRNGKey(1), x)
    functions = {}
    for name, layer in layers.items():
        forward = jax.jit(layer.apply)
        backward = jax.jit(jax.grad(lambda p, x, layer=layer: jnp.sum(layer.apply(p, x) ** 2), argnums=(0, 1)))
        functions[f"{name} forward"] = lambda forward=forward: forward(params, x)
        functions[f"{name} forward+backward"] = lambda backward=backward: backward(params, x)
    difference = float(jnp.max(jnp.abs(functions["flax forward"]() - functions["2x forward"]())))
    return {"input": [batch, height, width, channels], "features": features, "max_difference": difference,
            "seconds": median_seconds(functions, repeats)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    layers = [time_layer(*layer, args.batch, args.repeats) for layer in decoder_layers(tuple(args.image), args.depth)]
    print(f"\ndecoder of {tuple(args.image)} images, depth {args.depth}, {args.batch} images per call "
          f"({jax.default_backend()}); ms, median of {args.repeats}")
    print("| input | out | flax fwd | 2x fwd | ratio | flax fwd+bwd | 2x fwd+bwd | ratio | max difference |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for layer in layers + [{"input": "all", "features": "", "max_difference": max(l["max_difference"] for l in layers),
                            "seconds": {key: sum(l["seconds"][key] for l in layers) for key in layers[0]["seconds"]}}]:
        s = {key: value * 1e3 for key, value in layer["seconds"].items()}
        print(f"| {layer['input']} | {layer['features']} | {s['flax forward']:.1f} | {s['2x forward']:.1f} | "
              f"{s['flax forward'] / s['2x forward']:.2f}x | {s['flax forward+backward']:.1f} | "
              f"{s['2x forward+backward']:.1f} | {s['flax forward+backward'] / s['2x forward+backward']:.2f}x | "
              f"{layer['max_difference']:.1e} |")
    result = {"image": args.image, "depth": args.depth, "batch": args.batch, "backend": jax.default_backend(),
              "layers": layers}
    out = Path(args.out).with_suffix(".json")
    write_json(result, out)
    return result


if __name__ == "__main__":
    main()
