"""A tqdm bar when wanted, else an object with the same three methods that does nothing."""

from __future__ import annotations


class _NoProgress:
    def update(self, n=1):
        pass

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


def progress_bar(total: int, initial: int, desc: str, enabled: bool, unit: str = "step"):
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit)
