"""When to stop: the check schedule and the error estimate of the current iterate.

At a check, y_j = f(T_j) e_1 is compared with earlier checks' y; since the basis is
orthonormal, ||x_j - x_i|| / ||x_j|| = ||y_j - [y_i; 0]|| / ||y_j||, with no pass over n.
The change since the previous check is about the error of the *previous* iterate, so
stopping on it overshoots (tol 1e-6 used to give errors of 1e-8). With tol, the rule here
estimates the error e_j of y_j itself from the checked iterates of the last w steps
(w = max(4, j/5); at least the last 3 checks): their distances to the newest,

    s_i = ||y_j - y_i|| / ||y_j||  ~  e_j (rho^-(j-i) - 1),

are what a geometric decay at rate rho predicts. Unlike single one-step changes, which
scatter by ~30% around their trend, the s_i are cumulative and smooth. rho and e_j are fit
by least squares in log s over a grid of rho; the estimate is the larger of that e_j and
the one-step change D_j = s_{j-1} where step j-1 was checked (it bounds e_j whenever the
error at least halves per step, e.g. after a superlinear drop the fit cannot see). Near
rho = 1 (no decay) the fit gives no estimate and the run goes on. Within the first 16 steps
(4-point windows) the estimate is taken 2x larger. Where every distance in the window is
at rounding level, y has stopped moving, and the largest distance bounds it.
A plateau breaks any rule that reads only how the iterates move: while an outlier or a
cluster is still unfound the error stalls for a step or more, the moves are tiny, and the
fit sees convergence (stops at up to 7.6x tol on a spectrum with four outliers). Since
e_j >= e_i - s_i (triangle inequality), the estimate is held at least at the fits of the
last 3 checks less their distance to y_j, weighted 1, 0.5, 0.25 by steps back so that a
fit's excess over its e_i fades (the hold; the fits 2x within the first 16 steps, as the
estimate). A check whose previous step was not checked
never stops a column (the next step, checked too, decides); where y moves by no more than
rounding (D_j <= floor: the Krylov space exhausted) nothing is held.
Measured at 33 tolerances 1e-2..1e-10 (benchmarks/bench_stopping_sweep.py, 1 thread), stops
above tol, without any hold / with a one-step hold / with this one as first made (0.35 per
step, 1.5x early, no cap; the rule now: the last paragraph): on the tuned-on spectra and a
CNN's GGN (1743 stops) 35 (up to 7.6x) / 0 / 0, max 0.96 tol; on 5 held-out draws of
four spectra (--held-out, 2640 stops) 131 (24x) / 11 (5.3x) / 3 (1.09x); on 5 more draws,
seeds 20-24, 137 (6.9x) / 13 (5.3x) / 4 (1.08x). All at oracles < 20 steps. Cost, mean stop /
oracle: oracle >= 20, 1.051 -> 1.061 tuned on, 1.047 -> 1.051 held out (the same with a
one-step hold); oracle < 20, 1.12 -> 1.25 and 1.13 -> 1.28, one to three steps.
A plateau can also hide from every move: on a regression MLP's GGN + 1e-3 (kappa 7.6e6, the
prior a cluster of ~1090 eigenvalues under the network's 60) the error stalled near 7e-2
for steps while the moves, the fits and the holds all said 1e-2, and tol 1e-2 stopped at
7.95x tol. A second estimate, made from T alone, sees it: the residual estimate
r_j = beta_j |sum_i S_ji S_1i f[theta_i, theta_min]| / ||y_j|| (projected.residual_term; the
exact error with (A + t)^-1 v_{j+1} bounded as if theta_min were lambda_min). It overshoots
the error by 1-100x (25-30x on that plateau, 5x where decay is steady) and undershoots
before the smallest eigenvalue is found, so it is no stop on its own (see the README); the
estimate is only floored at RESIDUAL_SHARE = 0.1 of it. Measured at the 33 tolerances: the
two plateau stops on that GGN (7.95x, 6.45x tol) are gone (--networks: 9 -> 7 above tol, the
7 left at tol <= 5.6e-10, within 2.4x of float64's floor there), as is one at 2.1x tol on
the same spectrum with random eigenvectors (recorded estimates, offline). Oracles >= 20
steps: late 243 of 806 tuned on and 202 / 194 held out, unchanged; 313 -> 315 of 1448 on the
networks (mean 1.051). The price is at small oracles, a step late more often: tuned on,
646 -> 662 late of 937 (mean 1.245 -> 1.246); held out 1267 -> 1331 of 1939 (seeds 10-14,
1.284 -> 1.287) and 1271 -> 1329 (20-24, 1.290 -> 1.292). Shares 1/30 and 1/100 cost
nothing but keep the 2.1x stop; 1/15 and above remove it (offline, the same estimates).
A drop can hide behind the hold too: where the error falls faster than the fits foresaw
(the clustered spectrum, ~1e4 in one step once its 10 large eigenvalues are found) the held
fits were far above their e_i, and it is the drop that then reads as a plateau: the run went
2-3 steps past the oracle (blame, offline: the hold alone made 452 of the 662 late
small-oracle stops on the tuned-on spectra). The residual estimate sees such drops, so each
hold is capped at HOLD_CAP = 10 of it (caps 3 and 5 gain more steps but left stops above
tol on seeds 30-34: 14, up to 5.3x, with 3; 4, up to 3.0x, with 5 and the slower fade).
With the cap the hold can afford to fade more slowly (0.5 per step) and to keep the early
2x margin. Measured, rule as first made -> now: stops above tol on small oracles (< 20
steps), seeds 10-14 / 20-24 / 30-34 / 40-44, 3 (1.09x) / 4 (1.08x) / 12 (3.87x) / 6
(1.98x) -> 2 (1.09x) / 1 (1.08x) / 0 / 0, late 1331 / 1329 / 1331 / 1319 -> 844 / 843 /
858 / 844 of ~1937, mean stop / oracle 1.29 -> 1.24-1.25; tuned on 0 -> 0, late 662 -> 437
of 937, mean 1.246 -> 1.208; large oracles unchanged but 243 -> 247 late tuned on; networks
7 -> 6 above tol (all at tol <= 5.6e-10, float64's floor), late 315 -> 208 of 1448 (mean
1.051 -> 1.044). Seeds 30-34 were looked at while choosing; 40-44 only after. Seeds 50-54,
drawn after the commit: 2 of 1937 small-oracle stops above tol (1.43x, 1.01x; clustered).
A stall of a step or two just before a drop (the clustered spectrum as its 10 large
eigenvalues are all but found: 9.5e-5, 8.7e-5, 7.5e-5, then 1.1e-5) slows the decay; the
window's older iterates saw the faster rate, the fit read the error 2-4x low, the holds
(fits as low) and the floor (the residual estimate was 1.1-2.3x the error) did not catch it,
and held-out seeds 50, 61, 63 stopped at 1.43x, 1.08x, 1.33x tol. So before EARLY_STEPS the
fit is raised to the fit over the last two iterates alone (window_fit). Sweep, before ->
after: small-oracle stops above tol, seeds 10-14 2 (1.09x) -> 0, 60-64 2 (1.33x) -> 0, late
844 -> 880 and 843 -> 892 of 1939 (mean 1.242 -> 1.256, 1.243 -> 1.258); tuned on 0 -> 0,
late 437 -> 472 of 937 (1.208 -> 1.227); large oracles unchanged. The same over the recent
half of the window at later steps (a network Hessian's decay slowed 0.83 -> 0.89 per step
and the every-step sweep stopped at 1.06x tol) cost 247 -> 302-316 of 806 large oracles
late, tuned on, and is not used: real runs, whose fit sees sparser iterates, met tol there
at 65 tolerances for 3 z draws without it.
The floor of the dtype. Every estimate above reads how y = f(T) e_1 moves, and y is solved
in float64 from a T that rounding made: the exact projection of an operator off by ~eps
||A|| (eps of the vectors' dtype: the products' and the basis's rounding). y keeps
converging after x has stopped, so real runs reported converged with errors far above tol:
float64 at tol 1e-13, 5-80x (a CNN's GGN + 0.01: estimate 5e-14, error 8.3e-12); float32
below ~1e-4 on network curvatures, and even at 1e-2 where kappa ~1e7 (3.8-5.8x; benchmarks/
bench_floor.py). The error x cannot get below is eps x the conditioning of f(A) z under such
a perturbation, estimated from T as FLOOR_MARGIN eps theta_max sum_i w_i^2 |f'(theta_i)| /
||y|| (projected.attainable_term: a bound, within 1.25x, on the first-order change under a
perturbation of random signs; w = S^T e_1; O(j)). Measured against float64 references, the
lowest error a run reaches / that change without the margin: float32 0.02-0.76 (prescribed
spectra 0.15-0.76, eleven network curvatures 0.02-0.28); float64 0.2-0.8 where the term is
above ~100 eps, but the error near the floor is not monotone: a power law stopped at 1.6x
the term (the margin 2 covers it). Where the term is below ~100 eps (kappa <= 100) the
products' own rounding, which grows with n, is larger (2-10x) and not seen: tolerances under
~2e-14 in float64. The reported error estimate is the larger of the rule's and this floor,
converged says whether it meets tol, and a run whose tol is below the floor warns once. The
stop itself is unchanged: stopping at the floor would give up accuracy the run still gains
where the term is 30x pessimistic.
Far from convergence. Tolerances above 1e-2 stop where the run has not reached its rate,
and the rule misread the error there: on the network families of benchmarks/
bench_float32_closures.py (--families, --unseen-families; float64, GGN and EF, priors 1e-5,
1e-3, 0.1 ||A||) at tol 0.05, 0.1, 0.2, 0.3, 11 of 960 stops were above tol, up to 1.81x
(steps 5-33), and in the lab's replays at 1.5e-2..3e-2 2 of 912 (1.12x). So the rule's
estimate, like the Gauss-Radau one below, takes a margin rising log-linearly from 1 at
RULE_LOOSE_FROM = 1e-2 to LOOSE_MARGIN = 2 at RULE_LOOSE_AT = 1e-1 (rising_margin): none
above tol then, in both; at tol <= 1e-2 every stop the same (the lab's five sets at the
33 tolerances); at the lab's loose tolerances mean stop / oracle 1.32-1.56 -> 1.34-1.66.
(Rising from 3e-3 to 3e-2, as the Gauss-Radau margin does, cost more: 1.37-1.81.)
Far from the stop, checks follow the sparse schedule below; the fitted rate predicts where
tol will be met, and every step is checked from LEAD steps ahead of it.
With a lower bound. Everything above reads how the iterates move, because nothing else is
known; given mu <= lambda_min (funm_apply's eig_lower_bound: the prior of a GGN + prior),
the Gauss-Radau estimate of krylov/radau.py estimates the error of y_j from T_j, beta_j and
mu alone, plateaus included, and it replaces the rule: estimate = a margin x it, at any
check (sparse ones too); the window fit's rate still schedules the checks. It is not a
proven bound: measured against the error it sat at 0.96-0.98x for a long stretch of slow
decay on a Poisson MLP's GGN (three stops at tol 1e-2 were 1.007-1.034x tol with margin 1),
and 0.89x on an isolated eigenvalue just above a prior's cluster; 0.86x on small MLPs' GGN
/ EF + 0.01 in float64 while theta_min converges onto a 7-fold null space at the prior.
A margin of 1.05 removed every stop above tol in the sweeps (benchmarks/stopping_lab.py
--bounded, 5 sets) but left 4 of 1728 on those MLPs (up to 1.041x; bench_float32_closures
networks at 18 tolerances 3e-2..1e-10); 1.1 left 1 (1.013x), 1.15 none, for +18 to +55 of
~630-1255 large oracles late in the 5 sets (networks 23 -> 51, tuned on 161 -> 216) and
one step more on bench_stopping's logspace rows. 1.15 it is. Far from convergence it is
not enough. At the steps of the lab's records where the estimate reaches a new low (where
some tol would stop), estimate / error was >= 1.0 in all five sets wherever the error was
below 3e-3, but fell to 0.87 in [3e-3, 1e-2) and to 0.58 in [1e-2, 1e-1): a two-moons ReLU
MLP's GGN + 1e-2 at step 5, a sine MLP's GGN + 1e-3 at step 21, a Poisson MLP's slow decay
at steps 135-151 (and 0.81 at step 3 on a --families network of benchmarks/
bench_float32_closures.py). Replayed at three tolerances looser than the sweep's
(1.5e-2..3e-2), 10 stops were above tol (networks 2, unseen networks 7, held out 1; up to
1.33x). So the margin rises log-linearly in the estimate from LOOSE_FROM = 3e-3 to
LOOSE_MARGIN = 2 at LOOSE_AT = 3e-2 and above (with_margin): in those replays none above
tol, at a price only at loose tolerances (> 1e-3, mean stop / oracle 1.064 -> 1.123 on the
network GGNs, 1.189 -> 1.265 tuned on; a margin set by tol instead cost more, 1.140 and
1.288, and one rising from 1e-2 left a stop at 1.14x tol). Not covered: a CNN's EF +
1e-5 ||A|| in float64 (bench_float32_closures.py --families), where the estimate read 0.77x
the error at 3.3e-4 while theta_min converged onto the prior's cluster with four
eigenvalues at 1.1-2.1x the prior not yet found: 1 of 720 stops at 1.06x tol 3e-4 (5 at the
flat 1.15, up to 1.17x). A base margin of 1.3 would cover it, at +7 to +62 late
large-oracle stops in each lab set (replays). Real runs at the sweep's tolerances: see the
README. A drop. On spectra with a null space at the prior and a gap above it (benchmarks/
bench_null_space_spectra.py: a power-law, log-uniform or clustered tail 5-100x above the
prior) the estimate read as low as 0.32x the error one step after a cluster was found,
while theta_min converged onto the prior: the node at mu is then spent on that cluster and
what is left is an interior cluster not yet split, which the next step shows as a plateau
(a tail cluster's error 1.6e-2, 2.4e-4, 2.3e-4 at steps 7-9; the estimate 1.6e-2, 7.6e-5,
2.3e-4). So the estimate falls by at most RADAU_DROP = 30 per step from the last check's:
tol 1e-4 stopped there at 2.39x tol, now at the oracle. Measured on the lab's five sets
(real runs): large oracles unchanged, small oracles mean stop / oracle +0 to +0.011 (late
385 -> 385 tuned on, 10 -> 13 unseen networks); 10 gave +0.03 and 42 more late. Not covered:
the same regime without a drop, where the estimate reads 0.6-0.8x the error for a few
steps (bench_null_space_spectra.py: see the README for the stops above tol left).
Measured at 1.05, real runs, the rule -> the bound,
large oracles late / mean stop/oracle: tuned on 270 -> 161 of 807 (1.065 -> 1.043), network
GGNs 428 -> 23 of 1255 (1.066 -> 1.022), unseen networks' GGNs 278 -> 53 of 634 (1.062 ->
1.025), held-out seeds 10-14 / 70-74 225 / 230 -> 174 / 166 (1.056 -> 1.045); small oracles
472 -> 365 of 937 tuned on, 56 -> 3 of 56 network GGNs. Where it is weak: a spectrum whose
isolated smallest eigenvalue is already found ("few outliers"), where the node at mu stands
for mass the measure no longer has and the estimate is ~100x the error; and a bound far
below lambda_min (half of it: more late stops than the rule). Fixed m then needs one solve.
A bound the library derived (strict_bound=False: G A G's from a float32 sketch, which
rounding can put above lambda_min, or the shift of a closure marked PSD, fastlanczos/api.py
derived_bound) is not an error when a Ritz value falls below it beyond the products'
rounding: that column goes back to the rule, whose state is kept at every check anyway.
Every bound, the user's too, places the node OPERATOR_ROUNDING eps ||A|| lower (eps of the
operator's dtype): a float32 curvature's null space lies that far around its prior.
"""

import math

import torch

from .projected import solve_projected
from .validate import below_bound, raise_if_invalid

WINDOW_MIN, WINDOW_SHARE = 4, 0.2  # the fit's window: max(4, 20% of the steps so far)
MIN_POINTS = 3  # earlier iterates the fit needs (older ones are taken if the window has fewer)
LEAD = 2  # steps ahead of the predicted stop from which every step is checked
EARLY_STEPS = 16  # every step is checked up to here, so fast columns stop on time
FIRST_STEPS = 4  # up to here there is no window: 2 D_j is the estimate
SHORT_WINDOW_MARGIN = 2.0  # before EARLY_STEPS the window is 4 points: the rate is less sure
# (it scales the held fits too: 1.5 there had stopped above tol on held-out draws)
HOLD_STEPS, HOLD_DECAY = 3, 0.5  # the hold: the fits of the last 3 checks, x0.5 per step
RESIDUAL_SHARE = 0.1  # the floor: this share of the residual estimate (module doc)
HOLD_CAP = 10.0  # each hold is at most this multiple of the residual estimate (module doc)
FLOOR_MARGIN = 2.0  # the dtype's floor: this multiple of eps x the conditioning term (module doc)
RADAU_MARGIN = 1.15  # with a lower bound, the Gauss-Radau estimate times this (module doc)
# ... rising log-linearly in the estimate from LOOSE_FROM to LOOSE_MARGIN at LOOSE_AT and
# above: far from convergence the estimate read as low as 0.58x the error (module doc)
LOOSE_FROM, LOOSE_AT, LOOSE_MARGIN = 3e-3, 3e-2, 2.0
RADAU_DROP = 30.0  # ... and it falls by at most this factor per step (module doc, "a drop")
# The rule's estimate likewise, from 1 at RULE_LOOSE_FROM to LOOSE_MARGIN at RULE_LOOSE_AT:
# at tolerances above 1e-2 it stopped at up to 1.81x tol (module doc, "far from convergence")
RULE_LOOSE_FROM, RULE_LOOSE_AT = 1e-2, 1e-1
# The node sits this many eps ||A|| (eps of the operator's dtype) below the bound: the
# products' rounding moves the operator's eigenvalues by about that much, and a node above
# the low end of a cluster (a GGN's null space at the prior) reads the error low. Measured
# on six float32 GGN / EF closures (MLPs, 77-87 parameters, prior 1e-3 and 1e-2): the
# smallest eigenvalue 0.12-0.88 eps ||A|| below the prior, and estimate x 1.05 / error down
# to 0.53 at the bound, 1.06-1.18 at 1 eps ||A|| below, 1.08-1.34 at 3. Nothing in float64.
OPERATOR_ROUNDING = 3
RHO = (0.02, 0.998, 490)  # the fit's grid of rates: linspace(0.02, 0.998, 490)


def rho_grid(device):
    """The grid of rates, made on the device (a copy from the host would synchronize)."""
    return torch.linspace(*RHO[:2], RHO[2], dtype=torch.float64, device=device)


def window(steps):
    return max(WINDOW_MIN, int(WINDOW_SHARE * steps))


def check_steps(m, every, tolerance_mode, bounded=False):
    """Steps (0-based) after which y is recomputed on the sparse schedule. Fixed m: two
    solves, for the final y and the error estimate (one with a lower bound: the Gauss-Radau
    estimate needs no earlier iterate). Tolerance: every `every` steps, spaced out to ~j/8
    for large j (Stopping adds every step near the predicted stop)."""
    if not tolerance_mode:
        return {s for s in (m - 1 - every, m - 1) if s >= 0 and (s == m - 1 or not bounded)}
    steps, c = {m - 1}, every
    while c < m:
        steps.add(c - 1)
        c += max(every, c // 8)
    return steps


def relative_distance(y, earlier):
    """||y - [earlier; 0]|| / ||y|| per row (the plain distance where y is 0)."""
    prev = torch.nn.functional.pad(earlier, (0, y.shape[1] - earlier.shape[1]))
    diff = torch.linalg.vector_norm(y - prev, dim=1)
    size = torch.linalg.vector_norm(y, dim=1)
    return torch.where(size > 0, diff / size, diff)


class Stopping:
    """Keeps the latest y = f(T_j) e_1, the error estimates and the tolerance decisions.

    check_at(j) is the schedule the recurrence asks (host-side: the sparse steps, and every
    step from `dense_from` on, which each check updates from the one read it makes)."""

    def __init__(self, name, fn, need, tol, dtype, check, m=1, every=4, rule="current",
                 bound=None, strict_bound=True):
        """rule="previous" is the old rule (stop when the change between sparse checks is
        below tol), kept for benchmarks/bench_stopping.py to measure against. bound: a lower
        bound of the spectrum (a float), which makes the Gauss-Radau estimate (krylov/
        radau.py) the error estimate and the stop (module doc, "with a lower bound");
        strict_bound: a Ritz value below it is an error (validate.py), else it is clamped."""
        self.name, self.fn, self.need, self.tol, self.check = name, fn, need, tol, check
        self.bound = None if bound is None or rule == "previous" else float(bound)
        self.strict_bound = strict_bound
        self.slope = None  # the window fit's log rate per step (the schedule's prediction)
        self.legacy = rule == "previous"
        self.tol_or_default = tol if tol is not None else torch.finfo(dtype).eps ** 0.5
        self.eps = torch.finfo(dtype).eps
        self.floor = 1000 * self.eps  # one-step changes at rounding level
        self.y = self.err = self.min_ritz = self.attainable = None
        self.below_floor = None  # host-side, per column at the last check: attainable > tol
        self.sparse = check_steps(m, every, tol is not None, self.bound is not None)
        # 0-based step from which every step is checked: from the start (small T are cheap)
        self.dense_from = 0 if tol is not None and not self.legacy else math.inf
        self.prev_j = None
        self.history = []  # (step, y) of the latest checks, oldest first (the fit's points)
        self.predicted = self.reported = None
        self.holds = []  # (step, y, fit) of the last HOLD_STEPS checks: the plateau hold
        self.radau_last = None  # (step, margin x Gauss-Radau estimate) of the last check

    def check_at(self, j):
        return j in self.sparse or (j >= self.dense_from and not self.legacy)

    def on_check(self, t, j):
        self._last = (t, j, self.y, self.err, t.done.clone(), self._memory())
        predicted = self._update(t, j, repair=False)
        if self.tol is None:
            return False  # fixed m: no decisions, so no host synchronization
        packed = self._packed(t, predicted)
        if self.check:  # the one host sync per check, validation included
            read = raise_if_invalid(t, self, self.name, self.need, also=packed)
        else:
            read = packed.cpu()
        self.below_floor = read[2] > 0
        self._schedule(j, read[0], read[1])
        return not bool(read[0].any())

    def _packed(self, t, predicted):
        """The rows a check reads: live columns, predicted stops, the dtype's floor > tol."""
        tol = math.inf if self.tol is None else self.tol  # fixed m (a repair): no warning
        return torch.stack([(~t.done).double(), torch.where(t.done, math.inf, predicted),
                            (self.attainable > tol).double()])

    def error_estimate(self):
        """The error estimate reported (info.error_estimate): the rule's, floored at the
        accuracy the dtype can attain (module doc, "the floor of the dtype")."""
        return torch.maximum(self.err, self.attainable)

    def repair(self):
        """Redo the last check with LAPACK for the tridiagonals the compiled QL left unsolved
        (NaN Ritz values); returns the updated (live, predicted) rows."""
        t, j, self.y, self.err, done, memory = self._last
        self._restore(memory)
        t.done.copy_(done)
        predicted = self._update(t, j, repair=True)
        return self._packed(t, predicted)

    def _memory(self):
        return (self.prev_j, self.predicted, self.reported, list(self.holds),
                list(self.history), self.slope, self.radau_last)

    def _restore(self, memory):
        (self.prev_j, self.predicted, self.reported, self.holds, self.history,
         self.slope, self.radau_last) = memory

    def _schedule(self, j, live, predicted):
        """Check every step from LEAD steps ahead of the earliest predicted stop. Once there,
        stay unless the stop moves more than three windows ahead or no decay is seen (inf
        everywhere): then back to the sparse schedule."""
        if j + 1 < EARLY_STEPS:  # small T: checking every step costs little
            self.dense_from = 0
            return
        if not bool(live.any()):
            return
        first = float(predicted[live > 0].min())
        if not math.isfinite(first):
            self.dense_from = math.inf
        elif j < self.dense_from or first - j > 3 * window(j + 1) or j + 1 == EARLY_STEPS:
            self.dense_from = first - LEAD

    def _update(self, t, j, repair):
        """Solve, estimate, mark done; returns the predicted (0-based) step where each
        column meets tol (inf where no decay is seen yet)."""
        beta_next = bound = None
        if self.bound is not None:
            beta_next = t.beta.gather(1, (t.steps - 1).clamp_min(0).unsqueeze(1)).squeeze(1)
            bound = self.bound - OPERATOR_ROUNDING * self.eps * t.scale
        y, theta, term, sensitivity, radau = solve_projected(
            self.fn, t.alpha[:, : j + 1], t.beta[:, :j], t.steps, t.scale, repair=repair,
            bound=bound, beta_next=beta_next)
        # an invariant subspace makes y exact, not x: the floor stays (a two-moons GGN +
        # 1e-2 broke down at step 111 with errors of 40x tol 1e-12, reported as 0)
        self.attainable = FLOOR_MARGIN * self.eps * sensitivity
        live = ~t.done
        inf = torch.full((y.shape[0],), math.inf, dtype=torch.float64, device=y.device)
        if self.y is None:
            change = torch.where(t.znorm > 0, 1.0, 0.0).double()  # change from the zero guess
        else:
            change = relative_distance(y, self.y)
        low = theta.min(dim=1).values
        if self.tol is None or self.legacy:
            # with a bound, fixed m too reports the Gauss-Radau estimate of y_j itself
            estimate, predicted = (change if radau is None else with_margin(radau)), inf
            self.reported = estimate
            self.err = estimate if self.err is None else torch.where(live, estimate, self.err)
        else:
            size = torch.linalg.vector_norm(y, dim=1)
            residual = torch.where(size > 0, t.beta[:, j] * term / size, 0.0)
            estimate, predicted, sparse = self._estimate(j, y, change, inf,
                                                         residual.nan_to_num(0.0))
            if radau is not None:
                estimate, predicted, sparse = self._radau_stop(
                    j, radau, inf, (estimate, predicted, sparse), below_bound(
                        low, t.scale, self.eps, self.bound))
            if self.err is None:
                self.err = self.reported
            # Without an estimate of y_j the one reported is, at a sparse check, the window's
            # fit (at least the change since the previous check, about that iterate's error);
            # at a dense one (window filling, no decay) the larger of the last one and that
            # change. Only an estimate of y_j itself can stop a column, and only a stopped
            # column is converged (funm.py). (The larger at sparse checks too kept the first
            # steps' ~1 for good: a float32 run at m = 120 reported 6.7 for errors of 1.3e-5.)
            held = sparse if sparse is not None else torch.maximum(self.err, self.reported)
            self.err = torch.where(live, torch.where(torch.isinf(estimate), held, estimate),
                                   self.err)
        self.err = torch.where(t.broken, 0.0, self.err)
        self.y, self.min_ritz = y, low
        if self.tol is not None:
            stops = self.err if self.legacy else torch.where(t.broken, 0.0, estimate)
            t.done |= stops <= self.tol  # NaN (an unsolved T) never counts as converged
        return predicted

    def _estimate(self, j, y, change, inf, residual):
        """(error estimate of y_j, predicted 0-based stop step) per column (module doc);
        residual: beta_j |sum_i S_ji S_1i f[theta_i, theta_min]| / ||y_j||. The third value is
        what a sparse check reports instead (None at a dense check)."""
        if self.predicted is None:
            self.predicted = inf
        consecutive = self.prev_j is not None and j == self.prev_j + 1
        w = window(j + 1)
        points = [(i, yi) for i, yi in self.history if j - i <= w]
        if len(points) < MIN_POINTS:
            points = self.history[-MIN_POINTS:]
        estimate = hold = inf  # hold: this check's e_j for the next checks' plateau hold
        sparse = None  # what a sparse check reports (info only)
        if consecutive and j + 1 <= FIRST_STEPS:
            hold = change
            estimate = 2.0 * change  # too few iterates for a rate yet
        elif len(points) >= MIN_POINTS:
            hold, slope = window_fit(y, j, points, self.floor)
            self.slope = slope
            estimate = torch.maximum(hold, change) if consecutive else hold
            if j + 1 < EARLY_STEPS:  # measured: 1.12 tol at tol 1e-3 with a 1.5 margin
                hold, estimate = SHORT_WINDOW_MARGIN * hold, SHORT_WINDOW_MARGIN * estimate
            steps_left = torch.log(self.tol / estimate) / slope
            self.predicted = torch.where(slope < 0, j + steps_left.clamp_min(0.0), inf)
            self.predicted = torch.where(torch.isnan(self.predicted), inf, self.predicted)
        if consecutive:
            # The error cannot fall by more than the iterate moved: e_j >= e_i - s_i. A
            # plateau (an outlier or cluster not yet found) shows as tiny moves that the fit
            # reads as convergence; the fits of the last HOLD_STEPS checks (their e_i), less
            # s_i, hold it, by HOLD_DECAY per step back so that their excess over e_i fades. The
            # fits', not the estimates': those are >= the change D_i ~ e_{i-1}.
            # Where y no longer moves beyond rounding (D_j <= floor: the Krylov space is
            # exhausted, or y is converged to rounding) there is no plateau to hold.
            moving = change > self.floor
            for i, yi, held in self.holds:
                if j - i <= HOLD_STEPS:
                    hold_i = HOLD_DECAY ** (j - i - 1) * held - relative_distance(y, yi)
                    # A drop faster than the fit foresaw looks like a plateau to the hold
                    # (the fit_i it holds was above e_i); the residual estimate sees the drop.
                    hold_i = torch.minimum(hold_i, HOLD_CAP * residual)
                    estimate = torch.where(moving, torch.maximum(estimate, hold_i), estimate)
        else:
            self.reported = change  # the previous check's error, roughly (for info only)
            # reported at a sparse check (info only, never a stop): the window's fit where it
            # sees a decay, at least the change
            sparse = torch.where(torch.isinf(hold), change, torch.maximum(hold, change))
            # no D_j to hold a plateau with: such a check never stops a column (the next
            # step, checked too, decides; predicted above keeps the schedule)
            estimate = inf
        # A plateau the moves cannot show at all (every fit and hold agree on a small error
        # while it stalls at 5-8x that): the residual estimate, 25-30x above the error there
        # and 1-100x above it elsewhere, floors the estimate at RESIDUAL_SHARE of it. Checks
        # without an estimate (inf) stay inf.
        estimate = torch.maximum(estimate, RESIDUAL_SHARE * residual)
        estimate = rising_margin(estimate, 1.0, RULE_LOOSE_FROM, RULE_LOOSE_AT)
        self.holds = (self.holds + [(j, y, hold)])[-HOLD_STEPS:]
        self.history = (self.history + [(j, y)])[-(window(j + 2) + MIN_POINTS):]
        self.prev_j = j
        return estimate, self.predicted, sparse

    def _radau_stop(self, j, radau, inf, rule, off):
        """With a lower bound: the Gauss-Radau estimate of y_j is the estimate at any check,
        sparse or not (it needs no earlier iterate); the window fit's rate, where it has one,
        predicts the step where it meets tol (the schedule of checks). rule: what the rule
        decided at this check, (estimate, predicted, sparse), which a column whose Ritz
        values went below a bound the library derived (not strict) goes back to (off: where
        they did, beyond the products' rounding): that bound was off (a float32 sketch's
        rounding), and an estimate from it can be far too low (4.2x tol measured). Ritz
        values only fall with j, so the switch is for good. Any column without an estimate
        (inf: the node, lowered by the operator's rounding, left no room above 0 for f) goes
        back to the rule too, or a float32 run with a tiny prior would never stop."""
        radau = with_margin(radau)
        if self.radau_last is not None:
            # right after a drop the node at mu is spent on the cluster just found and the
            # estimate misses a plateau that follows (module doc, "a drop"): no faster than
            # RADAU_DROP per step from the last check's
            # (a check without an estimate, inf, holds nothing)
            i, last = self.radau_last
            self.radau_last = (j, radau)
            floor = torch.where(torch.isfinite(last), last / RADAU_DROP ** (j - i), 0.0)
            radau = torch.where(torch.isfinite(radau), torch.maximum(radau, floor), radau)
        else:
            self.radau_last = (j, radau)
        predicted = inf
        if self.slope is not None:
            steps_left = torch.log(self.tol / radau) / self.slope
            predicted = torch.where(self.slope < 0, j + steps_left.clamp_min(0.0), inf)
            predicted = torch.where(torch.isnan(predicted), inf, predicted)
        none = ~torch.isfinite(radau)
        off = none if self.strict_bound else off | none
        estimate, rule_predicted, sparse = rule
        return (torch.where(off, estimate, radau), torch.where(off, rule_predicted, predicted),
                None if sparse is None else torch.where(off, sparse, radau))


def with_margin(radau):
    """The Gauss-Radau estimate times its margin: RADAU_MARGIN up to LOOSE_FROM, LOOSE_MARGIN
    from LOOSE_AT, log-linear in between (module doc, "far from convergence")."""
    return rising_margin(radau, RADAU_MARGIN, LOOSE_FROM, LOOSE_AT)


def rising_margin(estimate, base, start, full):
    """estimate times a margin of `base` up to `start`, LOOSE_MARGIN from `full`, log-linear
    in between. Increasing in the estimate, so a smaller estimate is never reported larger."""
    rise = (torch.log(estimate / start) / math.log(full / start)).clamp(0.0, 1.0)
    return estimate * (base + (LOOSE_MARGIN - base) * rise.nan_to_num(0.0))


def window_fit(y, j, points, floor):
    """fit_estimate over the window's points; before EARLY_STEPS raised to the fit over the
    last two steps' iterates alone, where that one sees a decay (the slope is then the slower
    of the two). A stall of a step or two just before a drop slows the decay, the window's
    older points saw the faster rate, and its fit read the error 2-4x low (module doc)."""
    estimate, slope = fit_estimate(y, j, points, floor)
    recent = [(i, yi) for i, yi in points if j - i <= 2]
    if j + 1 >= EARLY_STEPS or len(recent) < 2:
        return estimate, slope
    near, near_slope = fit_estimate(y, j, recent, floor)
    seen = torch.isfinite(near)
    return (torch.where(seen, torch.maximum(estimate, near), estimate),
            torch.where(seen, torch.maximum(slope, near_slope), slope))


def fit_estimate(y, j, points, floor):
    """Error estimate of y (step j, (k, length)) from earlier iterates `points` [(i, y_i)],
    and the slope log(rho) per step, per row. Fits log s_i = log e + log(rho^-(j-i) - 1)
    over the grid of rates (module doc); a best rate at the grid's top is no decay: inf. Where
    every distance is below `floor` (rounding level of the vectors' dtype), y has stopped
    moving and the largest distance is the estimate if smaller."""
    length = y.shape[1]
    earlier = torch.stack([torch.nn.functional.pad(yi, (0, length - yi.shape[1]))
                           for _, yi in points], dim=1)  # (k, p, length)
    diff = torch.linalg.vector_norm(y.unsqueeze(1) - earlier, dim=2)
    size = torch.linalg.vector_norm(y, dim=1, keepdim=True)
    s = torch.where(size > 0, diff / size, diff)  # (k, p): relative_distance, one batch
    # filled on the device (no host-to-device copy, which would synchronize on CUDA)
    steps = torch.stack([torch.full((), float(j - i), dtype=torch.float64, device=s.device)
                         for i, _ in points])
    rho = rho_grid(s.device)
    shape = torch.log(rho.unsqueeze(1) ** -steps - 1.0)  # (R, p)
    logs = torch.log(s.clamp_min(torch.finfo(torch.float64).tiny)).unsqueeze(1)  # (k, 1, p)
    level = (logs - shape).mean(dim=2)  # (k, R): log e for each rate
    misfit = ((logs - shape - level.unsqueeze(2)) ** 2).sum(dim=2)
    best = misfit.argmin(dim=1)
    estimate = torch.exp(level.gather(1, best.unsqueeze(1)).squeeze(1))
    estimate = torch.where(best == rho.numel() - 1, math.inf, estimate)
    slope = torch.log(rho[best])
    stalled = (s <= floor).all(dim=1)
    estimate = torch.where(stalled, torch.minimum(estimate, s.amax(dim=1)), estimate)
    return torch.where(torch.isnan(estimate), math.inf, estimate), slope
