"""GMRF sampling N(0, Q^{-1}), Q = grid Laplacian + tau I: Lanczos vs sparse and dense Cholesky.

    python benchmarks/bench_gmrf.py --quick      # n = 2.5e3 .. 1e5 (2-D and 3-D grids)
    python benchmarks/bench_gmrf.py              # up to 1e6 nodes

Each (method, size) runs in a fresh process, so memory is that method's alone: "extra MiB"
is the peak resident set (VmHWM from /proc/self/status, reset through /proc/self/clear_refs
once Q and z are built; ru_maxrss minus the RSS at that point where the reset is refused)
minus the resident set at that point. Times are the best of --repeat runs, for K samples at
once, factorization included, with --threads CPU threads (default 1). On a GPU (torch.cuda
and CuPy present) the CuPy rows time cupyx sparse input and report torch's + CuPy's peak GPU
allocations instead.

Accuracy column: Lanczos: max relative error of a sample against dense Q^{-1/2} z (eigh)
where n <= --dense-max, else against a Lanczos run with tol 1e-10 (its own estimate is
also printed). Cholesky rows: max |x^T Q x - z^T z| / z^T z, which holds for every square
root of Q^{-1} (Cholesky samples are a different root, so they cannot be compared entrywise).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import scipy.linalg
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fastlanczos as fl  # noqa: E402
from fastlanczos.gmrf import grid_precision  # noqa: E402

GRIDS = {"2d": [50, 100, 316, 1000], "3d": [14, 22, 46, 100]}
QUICK = {"2d": [50, 100, 316], "3d": [14, 22, 46]}
METHODS = ["lanczos", "cholmod", "dense-chol", "dense-eigh"]
GPU_METHODS = ["lanczos-cupy", "dense-chol-cupy"]
# Every method gets the same thread count: with more threads than free cores, OpenMP's
# spinning made one busy 2-core machine 10x slower for Lanczos, which measures the machine.
THREAD_VARS = ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]


def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM"
    except OSError:
        return "ru_maxrss"


def _peak_kib(how):
    if how == "VmHWM":
        return _rss_kib("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _quadratic_check(Q, z, x):
    """x = S z with S S^T = Q^{-1} implies x^T Q x = z^T z."""
    xq = np.einsum("ij,ij->i", x, (Q @ x.T).T)
    zz = np.einsum("ij,ij->i", z, z)
    return float(np.max(np.abs(xq - zz) / zz))


def _sample(method, Q, z, tol, m):
    """One timed sampler call; returns (x as numpy, extra info dict)."""
    if method == "lanczos":
        reorth = "full" if Q.shape[0] * z.shape[0] * m <= 2e9 / 8 else "none"
        x, info = fl.inv_sqrt_apply(Q, z, m, tol=tol, reorth=reorth, return_info=True)
        return x, {"steps": int(info.steps.max()), "reorth": reorth,
                   "estimate": float(info.error_estimate.max())}
    if method == "cholmod":
        from sksparse.cholmod import cholesky

        factor = cholesky(Q.tocsc(), ordering_method="default")  # P Q P^T = L L^T
        y = factor.solve_Lt(z.T, use_LDLt_decomposition=False)  # L^T y = z
        return np.ascontiguousarray(factor.apply_Pt(y).T), {"nnz_L": int(factor.L().nnz)}
    if method == "dense-chol":
        L = scipy.linalg.cholesky(Q.toarray(), lower=True)
        return scipy.linalg.solve_triangular(L, z.T, lower=True, trans="T").T, {}
    if method == "dense-eigh":
        evals, U = np.linalg.eigh(Q.toarray())
        return (z @ U) / np.sqrt(evals) @ U.T, {}
    return _sample_gpu(method, Q, z, tol, m)


def _sample_gpu(method, Q, z, tol, m):
    import cupy
    import cupyx.scipy.sparse

    zc = cupy.asarray(z)
    if method == "lanczos-cupy":
        x, info = fl.inv_sqrt_apply(cupyx.scipy.sparse.csr_matrix(Q), zc, m, tol=tol,
                                    return_info=True)
        extra = {"steps": int(info.steps.max()), "estimate": float(info.error_estimate.max())}
    else:  # dense-chol-cupy
        L = cupy.linalg.cholesky(cupy.asarray(Q.toarray()))
        import cupyx.scipy.linalg

        x = cupyx.scipy.linalg.solve_triangular(L, zc.T, lower=True, trans="T").T
        extra = {}
    cupy.cuda.Device().synchronize()
    return cupy.asnumpy(x), extra


def run_one(args):
    """Child process: build Q and z, reset the peak, time the method, print one JSON line."""
    shape = (args.side,) * (2 if args.grid == "2d" else 3)
    Q = grid_precision(shape, args.tau)
    n = Q.shape[0]
    z = np.random.default_rng(0).standard_normal((args.k, n))
    gpu = "cupy" in args.method
    if gpu:
        import cupy

        _sample(args.method, grid_precision((4, 4), 1.0), z[:, :16], args.tol, 8)  # warm up
        torch.cuda.reset_peak_memory_stats()
        cupy.get_default_memory_pool().free_all_blocks()
    how, base = _reset_peak(), _rss_kib("VmRSS")
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        x, extra = _sample(args.method, Q, z, args.tol, args.m)
        best = min(best, time.perf_counter() - t0)
    mem = (_peak_kib(how) - base) / 1024
    if gpu:
        mem = (torch.cuda.max_memory_allocated()
               + cupy.get_default_memory_pool().total_bytes()) / 2**20
    if args.method.startswith("lanczos"):
        if n <= args.dense_max:
            evals, U = np.linalg.eigh(Q.toarray())
            ref, against = (z @ U) / np.sqrt(evals) @ U.T, "dense"
        else:
            ref = fl.inv_sqrt_apply(Q, z, args.m, tol=1e-10, reorth=extra.get("reorth", "full"))
            against = "tol 1e-10"
        err = float(np.max(np.linalg.norm(x - ref, axis=1) / np.linalg.norm(ref, axis=1)))
    else:
        err, against = _quadratic_check(Q, z, x), "x'Qx = z'z"
    print(json.dumps(dict(grid=args.grid, n=n, method=args.method, seconds=best,
                          extra_mib=mem, memory=how if not gpu else "gpu alloc",
                          error=err, against=against, **extra)))


def _fits(method, n, args):
    if method.startswith("dense"):
        return n <= args.dense_max
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="n up to ~1e5 only")
    p.add_argument("--k", type=int, default=8, help="samples per call")
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--m", type=int, default=200)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--dense-max", type=int, default=8000)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per (method, size)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for every method")
    p.add_argument("--gpu-only", action="store_true")
    p.add_argument("--json", help="also write the rows here")
    p.add_argument("--one", dest="method", help=argparse.SUPPRESS)
    p.add_argument("--grid", help=argparse.SUPPRESS)
    p.add_argument("--side", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.method:
        return run_one(args)

    methods = [] if args.gpu_only else list(METHODS)
    if torch.cuda.is_available():
        try:
            import cupy  # noqa: F401

            methods += GPU_METHODS
        except ImportError:
            pass
    rows = []
    print(f"K={args.k} samples, tau={args.tau}, tol={args.tol}, {args.threads} thread(s) "
          f"per method, {os.cpu_count()} CPUs")
    print(f"{'grid':4} {'n':>8} {'method':16} {'seconds':>9} {'extra MiB':>10} "
          f"{'error':>9}  against / notes")
    for grid, sides in (QUICK if args.quick else GRIDS).items():
        for side in sides:
            n = side ** (2 if grid == "2d" else 3)
            for method in methods:
                if not _fits(method, n, args):
                    continue
                cmd = [sys.executable, os.path.abspath(__file__), "--one", method, "--grid",
                       grid, "--side", str(side)] + [f"--{k}={getattr(args, k)}" for k in
                                                     ("k", "tau", "tol", "m", "repeat")]
                cmd.append(f"--dense-max={args.dense_max}")
                env = dict(os.environ, **{v: str(args.threads) for v in THREAD_VARS})
                try:
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                         timeout=args.timeout)
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                except subprocess.TimeoutExpired:
                    row = dict(grid=grid, n=n, method=method, seconds=float("inf"),
                               extra_mib=float("nan"), error=float("nan"), against="timeout")
                except (IndexError, json.JSONDecodeError):
                    err = out.stderr.strip().splitlines()[-1:] or ["no output"]
                    row = dict(grid=grid, n=n, method=method, seconds=float("nan"),
                               extra_mib=float("nan"), error=float("nan"), against=err[0])
                rows.append(row)
                notes = {k: v for k, v in row.items() if k in ("steps", "estimate", "nnz_L")}
                print(f"{grid:4} {n:>8} {method:16} {row['seconds']:>9.3f} "
                      f"{row['extra_mib']:>10.1f} {row['error']:>9.1e}  {row['against']} "
                      f"{notes if notes else ''}", flush=True)
    _crossovers(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def _crossovers(rows):
    """The smallest n from which Lanczos is at least as fast as each other method."""
    for grid in ("2d", "3d"):
        for fast in ("lanczos", "lanczos-cupy"):
            mine = {r["n"]: r["seconds"] for r in rows if r["grid"] == grid
                    and r["method"] == fast}
            if not mine:
                continue
            for other in sorted({r["method"] for r in rows} - {fast}):
                theirs = {r["n"]: r["seconds"] for r in rows if r["grid"] == grid
                          and r["method"] == other}
                common = sorted(set(mine) & set(theirs))
                if not common:
                    continue
                wins = [n for n in common if mine[n] <= theirs[n]]
                first = next((n for n in common if all(c in wins for c in common
                                                         if c >= n)), None)
                where = f"n >= {first}" if first else f"nowhere up to n = {common[-1]}"
                print(f"{grid}: {fast} faster than {other}: {where} (sizes compared: "
                      f"{common})")


if __name__ == "__main__":
    main()
