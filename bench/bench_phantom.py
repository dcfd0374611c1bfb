"""Time phantom generation at the CI, default and demo sizes; prints seconds."""

from __future__ import annotations

import time

from brainseg_gui.core.phantom import DEFAULT_SHAPE, DEMO_SHAPE, make_phantom


def main() -> None:
    for shape in ((64, 64, 48), DEFAULT_SHAPE, DEMO_SHAPE):
        times = []
        for seed in range(5):
            start = time.perf_counter()
            make_phantom(shape, seed=seed)
            times.append(time.perf_counter() - start)
        print(f"make_phantom{shape}: best {min(times):.3f} s, median {sorted(times)[2]:.3f} s")


if __name__ == "__main__":
    main()
