"""Library chatter off the reader's page.

CHGNet prints ``CHGNet v0.3.0 initialized with 412,525 parameters`` on every model it builds
(``verbose=False`` does not reach its constructor), its data loaders ``StructureData imported
...`` and its trainer ``CHGNet will run on cpu``: one fine-tuning run puts a handful of such
lines on a page. :func:`quiet` keeps them (and anything else a library prints) out of stdout;
when the block raises, what was printed is written to stderr, so an error keeps its context.
"""

from __future__ import annotations

import contextlib
import io
import sys


@contextlib.contextmanager
def quiet(enabled: bool = True):
    if not enabled:
        yield None
        return
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield buffer
    except BaseException:
        sys.stderr.write(buffer.getvalue())
        raise
