"""Save a PNG of an environment's frames (top row) above the events they produce (bottom row).

Events are drawn ON red, OFF blue on white, summed over the steps since the previous panel.
Uses Pillow only.

    python -m scripts.plot_events [--env CartPole-v1] [--panels 4] [--every 4] [--out docs/event_camera.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from envs.registry import make_env
from envs.wrappers import resize_frame

ON_COLOUR = np.array([220, 30, 30])
OFF_COLOUR = np.array([30, 60, 220])
SATURATION_COUNT = 2  # events per pixel drawn at full colour


def events_image(counts: np.ndarray) -> np.ndarray:
    """``(H, W, 2)`` ON/OFF counts as an RGB uint8 image: the majority polarity's colour on white."""
    on, off = counts[..., 0].astype(float), counts[..., 1].astype(float)
    strength = np.minimum(np.maximum(on, off) / SATURATION_COUNT, 1.0)[..., None]
    colour = np.where((on >= off)[..., None], ON_COLOUR, OFF_COLOUR)
    return (255 * (1 - strength) + colour * strength).astype(np.uint8)


Panel = tuple[np.ndarray, np.ndarray, int]  # (frame, events image, event count)


def collect_panels(env_id: str, panels: int, every: int, size: int, seed: int) -> list[Panel]:
    """``panels`` tuples (frame, events image, event count), ``every`` env steps apart."""
    config = {"image_size": [size, size], "event_camera": {"representation": "frame"}}
    env = make_env(f"event:{env_id}", config, seed=seed)
    env.reset(seed=seed)
    results = []
    for _ in range(panels):
        counts = np.zeros((size, size, 2), np.float32)
        for _ in range(every):
            observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
            counts += observation
            if terminated or truncated:
                env.reset()
        frame = resize_frame(env.render(), (size, size))
        results.append((frame, events_image(counts), int(counts.sum())))
    env.close()
    return results


def compose(panels: list[Panel], scale: int, every: int, title: str) -> Image.Image:
    """A two-row grid: frames on top, events below, each panel upscaled ``scale`` times."""
    size = panels[0][0].shape[0] * scale
    margin, label = 8, 16
    width = len(panels) * (size + margin) + margin
    height = 2 * (size + label + margin) + label + margin
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, 4), title, fill="black")
    for index, (frame, events, count) in enumerate(panels):
        left = margin + index * (size + margin)
        top = label + margin
        for row, (image, caption) in enumerate(
            [(frame, f"step {(index + 1) * every}"), (events, f"{count} events")]
        ):
            upper = top + row * (size + label + margin)
            draw.text((left, upper), caption, fill="black")
            picture = Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST)
            canvas.paste(picture, (left, upper + label))
            draw.rectangle((left - 1, upper + label - 1, left + size, upper + label + size), outline="gray")
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1", help="any id make_env accepts, without event:")
    parser.add_argument("--panels", type=int, default=4)
    parser.add_argument("--every", type=int, default=4, help="env steps between panels")
    parser.add_argument("--size", type=int, default=128, help="simulated sensor size (square)")
    parser.add_argument("--scale", type=int, default=2, help="upscaling of each panel in the PNG")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/event_camera.png"))
    args = parser.parse_args()
    panels = collect_panels(args.env, args.panels, args.every, args.size, args.seed)
    title = f"event:{args.env}  {args.size}x{args.size}  (ON red, OFF blue; events since the previous panel)"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    compose(panels, args.scale, args.every, title).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
