"""Progress that shows everywhere: a tqdm bar on a terminal, a plain line every N % in a log file.

Example:
    >>> from posedual_tf.progress import Progress
    >>> bar = Progress(total=1000, desc="convert", unit="img")
    >>> for _ in range(1000):
    ...     bar.update()
    >>> bar.close()
"""
from __future__ import annotations

import sys
import time


class Progress:
    """``update``/``close`` like tqdm. Not on a terminal (a log file, CI), it prints
    ``desc: 30% (300/1000 img, 12.3 img/s)`` each time another ``every_percent`` is done."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", stream=None, every_percent: int = 10,
                 enabled: bool = True):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.every = max(1, every_percent)
        self.done, self.next_percent, self.start = 0, self.every, time.time()
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True)
        self.enabled = enabled

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        if not self.enabled or not self.total:
            return
        percent = 100 * self.done // self.total
        if percent >= self.next_percent:
            self.next_percent = (percent // self.every + 1) * self.every
            self._line(f"{percent}%")

    def _line(self, what: str) -> None:
        rate = self.done / max(time.time() - self.start, 1e-9)
        print(f"{self.desc}: {what} ({self.done}/{self.total} {self.unit}, {rate:.1f} {self.unit}/s)",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.total and self.next_percent <= 100:
            self._line("done")
