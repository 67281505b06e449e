"""Progress bars for long work: live on a terminal, a line every 10 s in logs."""
import sys

from tqdm import tqdm


def progress(iterable=None, **kwargs):
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 10.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
