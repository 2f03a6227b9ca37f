"""What a wide table of small whole-number codes (survey answers, 0-9 codes) costs the exported
preprocessor, where every column is also one-hot over its levels.

``python -m bench.level_columns [--columns 10,100,1000] [--rows 2000] [--out bench/results]`` builds,
saves, reloads in safe mode and calls the preprocessor of a table of that many 5-level columns, and
writes seconds, file size and the largest difference from the driver's NumPy encoding. Run it with
``PYTHONPATH`` at a worktree of other code to compare layouts on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH, which may name other code to measure

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def measure(columns: int, rows: int) -> dict[str, float]:
    """Seconds to build, save, reload and call one preprocessor, its size, and its gap to NumPy."""
    import keras

    from search.data.encoding import build_preprocessor, encode, fit_stats, raw_inputs
    from search.data.table import Feature

    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.integers(0, 5, (rows, columns)), columns=[f"q{i}" for i in range(columns)])
    schema = tuple(Feature(name, "numeric") for name in table.columns)
    stats = fit_stats(table, schema)
    figures: dict[str, float] = {"columns": columns, "rows": rows}
    began = time.perf_counter()
    model = build_preprocessor(stats, schema)
    figures["build_s"] = time.perf_counter() - began
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "preprocessor.keras"
        began = time.perf_counter()
        model.save(path)
        figures["save_s"] = time.perf_counter() - began
        figures["size_kb"] = path.stat().st_size / 1024
        began = time.perf_counter()
        reloaded = keras.saving.load_model(path, safe_mode=True)
        figures["load_s"] = time.perf_counter() - began
    batch = raw_inputs(table.head(1000), schema)
    began = time.perf_counter()
    encoded = np.asarray(reloaded.predict(batch, batch_size=1000, verbose=0))
    figures["first_call_s"] = time.perf_counter() - began
    began = time.perf_counter()
    reloaded.predict(batch, batch_size=1000, verbose=0)
    figures["later_call_ms"] = (time.perf_counter() - began) * 1000
    figures["width"] = encoded.shape[1]
    figures["gap_to_numpy"] = float(np.abs(encoded - encode(stats, table.head(1000), schema)).max())
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.level_columns", description=__doc__)
    parser.add_argument("--columns", default="10,100,1000")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--label", default="", help="a name for the code measured, in the file name")
    args = parser.parse_args(argv)
    rows = [measure(int(c), args.rows) for c in args.columns.split(",")]
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |"
              for r in rows]
    stamp = time.strftime("%Y%m%dT%H%M%S")
    name = f"level-columns{'-' + args.label if args.label else ''}-{stamp}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    (args.out / f"{name}.md").write_text(f"# {name}\n\n`python -m bench.level_columns --columns {args.columns} "
                                         f"--rows {args.rows}`\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written: {args.out / name}.md")


if __name__ == "__main__":
    main()
