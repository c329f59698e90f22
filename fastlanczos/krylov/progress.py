"""progress=True: a tqdm bar over the Lanczos steps, for runs that take minutes.

The bar advances once per block product (a step) and shows the products made; in tolerance
mode each check also shows the largest error estimate among the unfinished columns, which
that check has already read back to the host (so the bar costs no extra synchronization; a
fixed-m run shows steps only). Without tqdm installed the bar is skipped with one warning.
"""

import warnings


class Progress:
    def __init__(self, total, desc):
        try:
            from tqdm.auto import tqdm
        except ImportError:
            warnings.warn("progress=True needs tqdm (pip install tqdm); running without a bar",
                          RuntimeWarning, stacklevel=4)
            self.bar = None
            return
        self.bar = tqdm(total=total, desc=desc, unit="step", leave=False)
        self.products = 0

    def step(self):
        if self.bar is not None:
            self.products += 1
            self.bar.update(1)
            self.bar.set_postfix_str(self._postfix(), refresh=False)

    def checked(self, err, done):
        """err, done: the check's per-column estimates and masks (already on the host side
        of this check's one synchronization in tolerance mode)."""
        if self.bar is not None:
            live = err[~done]
            self.err = float(live.max()) if live.numel() else 0.0
            self.bar.set_postfix_str(self._postfix())

    def _postfix(self):
        err = getattr(self, "err", None)
        return f"products {self.products}" + ("" if err is None else f", error {err:.1e}")

    def close(self):
        if self.bar is not None:
            self.bar.close()


def make_progress(enabled, total, desc="lanczos"):
    return Progress(total, desc) if enabled else None
