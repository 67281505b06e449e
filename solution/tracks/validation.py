"""What every track's submission validation shares: problems listed a few at a time, values
checked against the track's range, a member read as CSV. Problems are readable lines; a
check returns them all rather than stopping at the first."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

MAX_LISTED = 20  # per kind of problem, so a badly broken file still gives a readable report


def listed(problems: list[str], label: str, items) -> None:
    items = list(items)
    if items:
        shown = ", ".join(map(str, items[:MAX_LISTED]))
        problems.append(f"{label} ({len(items)}): {shown}{' ...' if len(items) > MAX_LISTED else ''}")


def check_values(problems, where: str, table: pd.DataFrame, columns, low, high, row_names):
    values = table[list(columns)].apply(lambda c: pd.to_numeric(c.astype(str).str.strip(), errors="coerce"))
    values = values.to_numpy(dtype=np.float64)
    nan_rows = ~np.isfinite(values).all(1)
    listed(problems, f"{where}: NaN, empty or non-numeric value", np.asarray(row_names)[nan_rows])
    with np.errstate(invalid="ignore"):
        out = ((values < low) | (values > high)).any(1) & ~nan_rows
    listed(problems, f"{where}: value outside [{low:g}, {high:g}]", np.asarray(row_names)[out])


def read_member(text: str, where: str, problems: list[str]) -> pd.DataFrame | None:
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        problems.append(f"{where}: not a readable CSV ({exc})")
        return None
