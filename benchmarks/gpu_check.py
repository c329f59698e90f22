"""One command for a CUDA machine: build the extension, run the GPU tests, time the kernels
and the end-to-end sampler, and write benchmarks/RESULTS-gpu.md naming the card.
Also the preconditioned sampler (Nystrom), the memory budget, the masked reorth kernel and
reorth="partial", the tolerance stop against the oracle m, and LaplacePosterior from build
to predictive and marglik.

    TORCH_CUDA_ARCH_LIST=9.0 python benchmarks/gpu_check.py [--out DIR] [--skip-build]
    python benchmarks/gpu_check.py --smoke --out /tmp/x   # tiny sizes, any machine (CI runs it)

Tables: tridiag_eigh vs torch.linalg.eigh on the dense T; the fused reorth step vs the same
step in plain torch ops; inv_sqrt_apply with the extension vs FASTLANCZOS_BACKEND=torch on a
dense operator and on the Gauss-Newton product of MLPs with 1 to 10 million parameters,
with the share of time spent outside the operator products (and two correctness checks: the
backends agree, x' A x = z' z), and a host-sync check.
"""

import argparse
import contextlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SECTIONS = []  # (title, text) in the order run


def section(title):
    """Run the decorated function now, capturing what it prints; failures are recorded too."""
    def run(fn):
        buf = io.StringIO()
        t0 = time.time()
        try:
            with contextlib.redirect_stdout(buf):
                fn()
        except Exception as err:  # keep going: later sections still tell something
            buf.write(f"\nFAILED: {type(err).__name__}: {err}\n")
        text = buf.getvalue().rstrip() + f"\n({time.time() - t0:.0f} s)"
        SECTIONS.append((title, text))
        print(f"\n## {title}\n{text}", flush=True)
        return fn
    return run


def build():
    env = dict(os.environ, FORCE_CUDA="1", MAX_JOBS=os.environ.get("MAX_JOBS", "16"))
    env.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    cmd = [sys.executable, "setup.py", "build_ext", "--inplace"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    log = out.stdout + out.stderr
    (ROOT / "build-gpu.log").write_text(log)
    spills = [ln.strip() for ln in log.splitlines() if "spill" in ln and " 0 bytes spill" not in ln]
    print(f"build exit code {out.returncode}; lines reporting spills: {len(spills)}")
    for ln in spills[:10]:
        print("  ", ln)
    if out.returncode:
        print(log[-3000:])
        raise RuntimeError("build failed")


def run_tests():
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
           "-k", "cuda or ops or sync"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    print("\n".join((out.stdout + out.stderr).strip().splitlines()[-15:]))


def kernels(cfg):
    import torch
    from bench_kernels import bench_eigh, bench_reorth
    dev = torch.device(cfg.device)
    for k in cfg.eigh_k:
        bench_eigh(dev, [(k, m) for m in cfg.eigh_m], 10 if k <= 256 else 3)
    bench_reorth(dev, cfg.reorth_sizes, 10)


def curvature_blocks(cfg):
    script = ROOT / "benchmarks" / "bench_curvature.py"
    # The in-place build is not installed: the script finds the package through the path.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    out = subprocess.run([sys.executable, str(script), "--device", cfg.device, *cfg.curvature_args],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    print("\n".join((out.stdout + out.stderr).strip().splitlines()[-20:]))
    if out.returncode:
        raise RuntimeError(f"bench_curvature.py exited with {out.returncode}")


def mlp_ggn(n_hidden, device, batch):
    """A Gauss-Newton product J^T H J of a cross-entropy MLP on random MNIST-shaped data,
    written directly with torch.func: one forward (vjp) and a vmapped jvp per block."""
    import torch
    from torch.func import functional_call, jvp, vjp, vmap
    torch.manual_seed(0)
    dims = [784, *n_hidden, 10]
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
    model = torch.nn.Sequential(*layers[:-1]).to(device)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])
    X = torch.randn(batch, 784, device=device)

    def logits(flat):
        chunks = torch.split(flat, [s.numel() for s in shapes])
        return functional_call(model, {n: c.view(s) for n, c, s in zip(names, chunks, shapes)},
                               (X,))

    def ggn(V):
        out, pull = vjp(logits, theta)
        p = torch.softmax(out, dim=-1)
        Jv = vmap(lambda v: jvp(logits, (theta,), (v,))[1])(V)
        HJv = p * Jv - p * (p * Jv).sum(-1, keepdim=True)  # cross-entropy Hessian in logits
        return vmap(lambda u: pull(u)[0])(HJv)

    return ggn, theta.numel()


def dense_spd(n, device):
    import torch
    A = torch.randn(n, n, device=device) / n**0.5
    A = A @ A.T + 0.1 * torch.eye(n, device=device)
    return (lambda V, A=A: V @ A), n


def end_to_end(cfg):
    """inv_sqrt_apply with the extension vs FASTLANCZOS_BACKEND=torch, float32, fixed m. The
    share outside the products is 1 - (time of m block products) / (time of the run).
    Checks: the two backends agree, and x' A x = z' z (x = A^{-1/2} z), one product each."""
    import torch
    from bench_kernels import timeit
    from report import forced_backend

    import fastlanczos as fl
    dev = torch.device(cfg.device)
    k, m, shift = cfg.k, cfg.m, 1e-2
    print(f"{'operator':>22} {'n':>10} {'k':>3} {'m':>3} {'ext s':>8} {'torch s':>8} "
          f"{'speed-up':>8} {'hvp s':>8} {'outside hvp (ext)':>18} {'(torch)':>8} "
          f"{'ext-torch':>9} {'x`Ax/z`z-1':>10}")
    for name, make in cfg.operators:
        hvp, n = make(dev)
        z = torch.randn(k, n, device=dev)

        def run(z=z, hvp=hvp):
            return fl.inv_sqrt_apply(hvp, z, m, shift=shift, check=False)

        with forced_backend(None):
            t_ext = timeit(run, dev, cfg.reps)
            x_ext = run()
        with forced_backend("torch"):
            t_torch = timeit(run, dev, cfg.reps)
            x_torch = run()
        t_hvp = timeit(lambda z=z, hvp=hvp: [hvp(z) for _ in range(m)], dev, cfg.reps)
        agree = float((x_ext - x_torch).norm() / x_torch.norm())
        Ax = hvp(x_ext) + shift * x_ext
        quad = float(((x_ext * Ax).sum(1) / (z * z).sum(1) - 1).abs().max())
        print(f"{name:>22} {n:>10} {k:>3} {m:>3} {t_ext:>8.3f} {t_torch:>8.3f} "
              f"{t_torch / t_ext:>7.2f}x {t_hvp:>8.3f} {1 - t_hvp / t_ext:>17.1%} "
              f"{1 - t_hvp / t_torch:>8.1%} {agree:>9.1e} {quad:>10.1e}")
        del z, hvp, x_ext, x_torch, Ax
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def preconditioned(cfg):
    """inv_root_apply on the MLP GGN + prior 1 to tol: None vs the Nystrom preconditioner
    (rank auto), vector products counting the sketch; x' A x = z' z for each; then the
    memory budget: the device's peak allocation with and without memory_budget."""
    import torch

    import fastlanczos as fl
    dev = torch.device(cfg.device)
    hvp, n = cfg.precondition_operator(dev)
    k, tol, m = cfg.k, 1e-4, cfg.m * 4
    z = torch.randn(k, n, device=dev)
    print(f"{'precondition':>12} {'rank':>5} {'steps':>6} {'vector products':>16} {'s':>8} "
          f"{'x`Ax/z`z-1':>10}")
    for pre in (None, "nystrom"):
        t = time.perf_counter()
        x, info = fl.inv_root_apply(hvp, z, min(m, n), shift=1.0, tol=tol, precondition=pre,
                                    return_info=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        quad = float(((x * (hvp(x) + x)).sum(1) / (z * z).sum(1) - 1).abs().max())
        print(f"{str(pre):>12} {info.preconditioner_rank:>5} {int(info.steps.max()):>6} "
              f"{info.products * k + info.preconditioner_products:>16} {seconds:>8.3f} "
              f"{quad:>10.1e}")
    mm = min(cfg.m, n)
    basis = k * mm * n * 4
    budget = basis // 3
    for b in (None, budget):
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        _, info = fl.inv_root_apply(hvp, z, mm, shift=1.0, memory_budget=b, return_info=True)
        peak = (torch.cuda.max_memory_allocated() - before) if dev.type == "cuda" else 0
        print(f"memory_budget {b}: {info.memory_plan}; peak allocated over the start "
              f"{peak / 2**20:.0f} MiB (basis alone {basis / 2**20:.0f} MiB)")


def partial_and_stop(cfg):
    """reorth_step_masked against its torch reference (mixed 0/1/2 passes) and its time per
    pass count; inv_sqrt_apply with reorth full / partial / none on the end-to-end MLP GGN
    (time, share outside the products timed inside the run, partial vs full); the tolerance
    stop on a prescribed spectrum (float64): stop vs the smallest sufficient m, error / tol;
    float32 below its floor (not converged, a warning)."""
    import torch
    dev = torch.device(cfg.device)
    _masked_kernel(cfg, dev)
    _three_term_kernel(cfg, dev)
    _reorth_modes(cfg, dev)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    _stop_vs_oracle(cfg, dev)
    _derived_bound(dev)


def _masked_kernel(cfg, dev):
    import torch
    from bench_kernels import timeit

    from fastlanczos.krylov import ops
    from fastlanczos.krylov.reorth import masked_cgs_step_torch
    k, mm, j, n = cfg.reorth_sizes[0]
    j = min(j, mm - 2)  # the step writes row j + 1
    basis = torch.linalg.qr(torch.randn(k, n, mm, device=dev)).Q.transpose(1, 2).contiguous()
    w0 = torch.randn(k, n, device=dev)
    for passes in ([0, 1, 2] * k)[:k], [0] * k, [1] * k, [2] * k:
        mask = torch.tensor(passes, dtype=torch.uint8, device=dev)
        b1, b2, w1, w2 = basis.clone(), basis.clone(), w0.clone(), w0.clone()
        h1, beta1 = ops.reorth_step_masked(b1, w1, mask, j)
        h2, beta2 = masked_cgs_step_torch(b2, w2, mask, j)
        diff = float((b1[:, j + 1] - b2[:, j + 1]).abs().max() + (beta1 - beta2).abs().max())
        t = timeit(lambda mask=mask: ops.reorth_step_masked(basis.clone(), w0.clone(), mask, j),
                   dev, cfg.reps)
        print(f"reorth_step_masked k={k} j={j} n={n} passes {passes[:3]}...: "
              f"{t * 1e3:.2f} ms (incl. clones), vs torch reference max diff {diff:.1e}")


def _three_term_kernel(cfg, dev):
    """three_term_step (partial's plain update, two passes over w) against its torch
    reference, both timed; and reorth_step_masked with the given beta (0 passes)."""
    import torch
    from bench_kernels import timeit

    from fastlanczos.krylov import ops
    from fastlanczos.krylov.reorth import three_term_step_scaled_torch
    k, mm, j, n = cfg.reorth_sizes[0]
    j = min(j, mm - 2)
    for dtype in (torch.float32, torch.float64):
        basis = torch.randn(k, mm, n, device=dev, dtype=dtype) / n**0.5
        w0 = torch.randn(k, n, device=dev, dtype=dtype)
        bp = torch.rand(k, device=dev, dtype=torch.float64) + 0.5
        c = torch.full((k,), 0.25, device=dev, dtype=torch.float64)
        w1, w2 = w0.clone(), w0.clone()
        got = ops.three_term_step(basis, w1, bp, c, j)
        ref = three_term_step_scaled_torch(basis, w2, bp, c, j)
        diff = max(float(((a - b).abs() / b.abs().clamp_min(1e-30)).max())
                   for a, b in zip(got, ref))
        wdiff = float((w1.double() - w2.double()).abs().max() / w2.double().abs().max())
        work = torch.empty_like(w0)
        t_k = timeit(lambda: ops.three_term_step(basis, w0.clone(), bp, c, j), dev, cfg.reps)
        t_t = timeit(lambda: three_term_step_scaled_torch(basis, w0.clone(), bp, c, j, work),
                     dev, cfg.reps)
        mask = torch.zeros(k, dtype=torch.uint8, device=dev)
        beta = got[1]
        b1 = basis.clone()
        _, beta1 = ops.reorth_step_masked(b1, w1, mask, j, beta)
        given = bool(torch.equal(beta1, beta))
        print(f"three_term_step {str(dtype)[6:]} k={k} j={j} n={n}: {t_k * 1e3:.2f} ms vs torch "
              f"ops {t_t * 1e3:.2f} ms (incl. clones); max rel diff alpha/beta/norm "
              f"{diff:.1e}, w {wdiff:.1e}; masked step keeps the given beta: {given}")


def _reorth_modes(cfg, dev):
    import torch

    import fastlanczos as fl
    name, make = cfg.operators[1]
    hvp, n = make(dev)
    z = torch.randn(cfg.k, n, device=dev)
    print(f"\n{name}, n = {n}, k = {cfg.k}, m = {cfg.m}, float32")
    print(f"{'reorth':>8} {'s':>8} {'in-run hvp s':>12} {'outside hvp':>11} {'vs full':>9}")
    xs = {}
    for mode in ("full", "partial", "none"):
        spent = [0.0]

        def timed(V):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = hvp(V)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            spent[0] += time.perf_counter() - t0
            return out
        fl.inv_sqrt_apply(hvp, z, cfg.m, shift=1e-2, reorth=mode, check=False)  # warm up
        t0 = time.perf_counter()
        xs[mode] = fl.inv_sqrt_apply(timed, z, cfg.m, shift=1e-2, reorth=mode, check=False)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter() - t0
        rel = float((xs[mode] - xs["full"]).norm() / xs["full"].norm())
        print(f"{mode:>8} {t:>8.3f} {spent[0]:>12.3f} {1 - spent[0] / t:>10.1%} {rel:>9.1e}")


def _stop_vs_oracle(cfg, dev):
    import torch

    import fastlanczos as fl
    nn_ = cfg.stop_n
    evals = torch.logspace(-3, 0, nn_, dtype=torch.float64, device=dev)
    q = torch.linalg.qr(torch.randn(nn_, nn_, dtype=torch.float64, device=dev)).Q
    A = (q * evals) @ q.T
    z = torch.randn(4, nn_, dtype=torch.float64, device=dev)
    ref = ((z @ q) * evals.rsqrt()) @ q.T
    print(f"\ntolerance stop, logspace 1e-3..1 (n = {nn_}), inv_sqrt, 4 columns, float64; "
          f"'bound': eig_lower_bound = 1e-3 less 0.1% (the Gauss-Radau stop)")
    print(f"{'tol':>6} {'oracle':>6} {'stop':>5} {'stop/oracle':>11} {'err/tol':>8} "
          f"{'bound stop':>10} {'bound err/tol':>13}")
    for tol in (1e-3, 1e-6, 1e-9):
        x, info = fl.inv_sqrt_apply(A, z, nn_, tol=tol, return_info=True)
        err = (x - ref).norm(dim=1) / ref.norm(dim=1)
        xb, infob = fl.inv_sqrt_apply(A, z, nn_, tol=tol, return_info=True,
                                      eig_lower_bound=1e-3 * (1 - 1e-3))
        errb = (xb - ref).norm(dim=1) / ref.norm(dim=1)
        stop = int(info.steps.max())
        oracle = stop  # the smallest fixed m (searched downwards) whose error meets tol
        while oracle > 1:
            xm = fl.inv_sqrt_apply(A, z, oracle - 1)
            if float(((xm - ref).norm(dim=1) / ref.norm(dim=1)).max()) > tol:
                break
            oracle -= 1
        print(f"{tol:>6.0e} {oracle:>6} {stop:>5} {stop / oracle:>11.3f} "
              f"{float(err.max()) / tol:>8.3f} {int(infob.steps.max()):>10} "
              f"{float(errb.max()) / tol:>13.3f}")
    _floor_of_float32(A, z, ref, nn_)


def _floor_of_float32(A, z, ref, m):
    """float32 at tol 1e-3 (met) and 1e-6 (below float32's floor at kappa 1e3): the second
    must report converged=False with a warning and an estimate not below the error."""
    import warnings

    import fastlanczos as fl
    print(f"\nthe floor of float32, same operator: {'tol':>6} {'converged':>9} {'warned':>6} "
          f"{'err/tol':>8} {'est/err':>8}")
    for tol in (1e-3, 1e-6):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x, info = fl.inv_sqrt_apply(A.float(), z.float(), m, tol=tol, return_info=True)
        err = (x.double() - ref).norm(dim=1) / ref.norm(dim=1)
        warned = any("below the accuracy" in str(w.message) for w in caught)
        print(f"{'':36s} {tol:>6.0e} {int(info.converged.sum()):>7}/4 {str(warned):>6} "
              f"{float(err.max()) / tol:>8.2f} "
              f"{float((info.error_estimate.double() / err).min()):>8.2f}")


def _derived_bound(dev):
    """A float32 ggn_vp closure (cross-entropy MLP) with shift > 0 and no eig_lower_bound:
    the shift is its bound (fastlanczos/api.py derived_bound, the node 3 eps ||A|| lower);
    against the rule (the closure in a lambda). Reference: the closure's own operator,
    float64 eigh."""
    import warnings

    import torch

    import fastlanczos as fl
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Tanh(),
                              torch.nn.Linear(6, 4)).to(dev)
    x, y = torch.randn(200, 8, device=dev), torch.randint(0, 4, (200,), device=dev)
    ggn = fl.ggn_vp(net, torch.nn.CrossEntropyLoss(reduction="sum"), (x, y))
    n = ggn.num_params
    A = ggn(torch.eye(n, device=dev)).double()
    A = (A + A.T) / 2
    z = torch.randn(4, n, device=dev)
    print(f"\nderived bound: float32 ggn_vp closure (n = {n}) + shift, 4 columns; "
          f"{'shift':>6} {'tol':>6} {'rule stop':>9} {'rule err/tol':>12} {'bound stop':>10} "
          f"{'bound err/tol':>13}")
    for shift in (1e-2, 1.0):
        w, Q = torch.linalg.eigh(A + shift * torch.eye(n, dtype=torch.float64, device=dev))
        ref = (Q @ (w.rsqrt().unsqueeze(1) * (Q.T @ z.double().T))).T
        for tol in (1e-2, 1e-3):
            cells = []
            for op in (lambda V: ggn(V), ggn):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    xx, info = fl.inv_sqrt_apply(op, z, n, tol=tol, shift=shift,
                                                 return_info=True)
                err = (xx.double() - ref).norm(dim=1) / ref.norm(dim=1)
                met = err[info.converged]
                cells.append((int(info.steps.max()), float(met.max()) / tol if met.numel()
                              else float("nan")))
            print(f"{'':66s} {shift:>6g} {tol:>6.0e} {cells[0][0]:>9} {cells[0][1]:>12.2f} "
                  f"{cells[1][0]:>10} {cells[1][1]:>13.2f}")


def laplace_end_to_end(cfg):
    """LaplacePosterior on the GPU from the user's side: build (GGN, cached Jacobians when
    they fit), sample (precondition="auto"), GLM/probit predictive, marglik prior."""
    import torch
    from torch import nn

    import fastlanczos as fl
    dev = torch.device(cfg.device)
    torch.manual_seed(0)
    x = torch.randn(cfg.laplace_examples, 64, device=dev)
    y = (x[:, :10].argmax(1)).to(dev)
    net = nn.Sequential(nn.Linear(64, cfg.laplace_width), nn.Tanh(),
                        nn.Linear(cfg.laplace_width, 10)).to(dev).eval()
    steps = []

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        steps.append((name, time.perf_counter() - t))
        return out

    post = timed("build", lambda: fl.LaplacePosterior(net, nn.CrossEntropyLoss(), (x, y)))
    _, info = timed("sample 32, tol 1e-3", lambda: post.sample(32, return_info=True))
    probs = timed("predictive glm/probit", lambda: post.predictive(x[:256]))
    tuned = timed("prior by marglik", lambda: post.optimize_prior_precision())
    print(f"n = {post.n}, {cfg.laplace_examples} examples, cached {post.curvature_vp.cached}; "
          f"sample: rank {info.preconditioner_rank}, steps {int(info.steps.max())}; "
          f"probs sum to 1: {float((probs.sum(1) - 1).abs().max()):.1e}; "
          f"prior {float(tuned.prior_precision):.3g}")
    for name, seconds in steps:
        print(f"{name:>24} {seconds:8.3f} s")


def sync_check(cfg):
    """Zero host synchronizations in a fixed-m run with the extension: the CUDA sync debug mode
    on a GPU, the counting probe of tests/host_sync.py elsewhere."""
    from report import forced_backend
    with forced_backend(None):
        _sync_check(cfg)


def _sync_check(cfg):
    import torch

    import fastlanczos as fl
    hvp, n = dense_spd(cfg.sync_n, cfg.device)
    z = torch.randn(cfg.k, n, device=cfg.device)
    fl.inv_sqrt_apply(hvp, z, 16, check=False)  # warm-up: lazy initialization may sync
    what = f"fixed m = {cfg.m}, k = {cfg.k}, check=False"

    def marked(V):  # a closure marked PSD, as ggn_vp's: shift becomes its derived bound
        return hvp(V)
    marked.psd = True
    if cfg.device == "cuda":
        torch.cuda.set_sync_debug_mode("error")
        try:
            fl.inv_sqrt_apply(hvp, z, cfg.m, check=False)
            fl.inv_sqrt_apply(hvp, z, cfg.m, check=False, eig_lower_bound=1e-3)
            fl.inv_sqrt_apply(marked, z, cfg.m, check=False, shift=1e-3)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        print(f"{what}, also with eig_lower_bound and with a bound derived "
              f"from shift (the Gauss-Radau estimate): zero host synchronizations "
              f"(CUDA sync debug mode 'error')")
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from host_sync import HostSyncProbe

    from fastlanczos.krylov import reorth
    # on the CPU the masks live in host memory and are read; count as on a GPU, where not
    branch, reorth.branch_on_mask = reorth.branch_on_mask, lambda device: False
    try:
        with HostSyncProbe() as probe:
            fl.inv_sqrt_apply(hvp, z, cfg.m, check=False)
            fl.inv_sqrt_apply(hvp, z, cfg.m, check=False, eig_lower_bound=1e-3)
            fl.inv_sqrt_apply(marked, z, cfg.m, check=False, shift=1e-3)
    finally:
        reorth.branch_on_mask = branch
    print(f"{what}, also with eig_lower_bound and with a bound derived from shift (the "
          f"Gauss-Radau estimate): {probe.count} host reads counted by tests/host_sync.py "
          f"{probe.events}")
    if probe.count:
        raise RuntimeError("the fixed-m run reads from the device")


class Full:
    """The sizes of the GPU run the issue asks for."""
    device, k, m, reps, sync_n = "cuda", 8, 64, 2, 4096
    eigh_k, eigh_m = (1, 16, 256, 1024), (16, 64, 128, 512)
    curvature_args = ()
    reorth_sizes = [(4, 64, 63, 10**6), (8, 64, 63, 10**6), (8, 64, 63, 10**7)]
    operators = [("dense 16384", lambda dev: dense_spd(16384, dev)),
                 ("MLP GGN 784-1024-256", lambda dev: mlp_ggn((1024, 256), dev, 4096)),
                 ("MLP GGN 784-2048-4096", lambda dev: mlp_ggn((2048, 4096), dev, 4096))]
    precondition_operator = staticmethod(lambda dev: mlp_ggn((1024, 256), dev, 4096))
    laplace_examples, laplace_width = 4096, 256
    stop_n = 2048


class Smoke(Full):
    """Tiny sizes, any device: checks that the script itself runs (tests/test_gpu_check.py)."""
    device, k, m, reps, sync_n = "cpu", 4, 8, 1, 64
    eigh_k, eigh_m = (2,), (8,)
    curvature_args = ("--quick", "--k", "2", "--repeats", "1")
    reorth_sizes = [(2, 8, 7, 1000)]
    operators = [("dense 64", lambda dev: dense_spd(64, dev)),
                 ("MLP GGN 784-8", lambda dev: mlp_ggn((8,), dev, 16))]
    precondition_operator = staticmethod(lambda dev: mlp_ggn((8,), dev, 16))
    laplace_examples, laplace_width = 64, 8
    stop_n = 120


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks"))
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes on the CPU (or CUDA if present), no build, no tests, "
                             "results only under --out: checks the script, measures nothing")
    args = parser.parse_args(argv)
    SECTIONS.clear()
    cfg = Smoke if args.smoke else Full
    if not (args.skip_build or args.smoke):
        section("Build (setup.py build_ext --inplace, FORCE_CUDA=1)")(build)
    import torch
    if args.smoke and torch.cuda.is_available():
        cfg.device = "cuda"
    card = torch.cuda.get_device_name() if cfg.device == "cuda" else "none (CPU smoke run)"
    header = (f"## `benchmarks/gpu_check.py`\n\nCard: {card}; torch {torch.__version__} (CUDA "
              f"{torch.version.cuda}); {time.strftime('%Y-%m-%d')}; produced by "
              "`python benchmarks/gpu_check.py`.\n")
    if not args.smoke:
        section("GPU tests (pytest -k 'cuda or ops or sync')")(run_tests)
    section("Kernels: tridiag_eigh and the fused reorth step")(lambda: kernels(cfg))
    section(f"End to end: inv_sqrt_apply, k = {cfg.k}, m = {cfg.m}, float32")(
        lambda: end_to_end(cfg))
    section("Preconditioned sampling (inv_root_apply) and memory_budget")(
        lambda: preconditioned(cfg))
    section("Partial reorthogonalization and the tolerance stop")(
        lambda: partial_and_stop(cfg))
    section("LaplacePosterior end to end: build, sample, predictive, marglik")(
        lambda: laplace_end_to_end(cfg))
    section("Host synchronization")(lambda: sync_check(cfg))
    section("Curvature products: block of k vs k single products")(lambda: curvature_blocks(cfg))
    body = "".join(f"\n### {t}\n\n```\n{x}\n```\n" for t, x in SECTIONS)
    # Its own section of the file: compare.py --device cuda writes another one beside it.
    from report import write_section

    paths = {Path(args.out) / "RESULTS-gpu.md"}
    if not args.smoke:
        paths.add(ROOT / "benchmarks" / "RESULTS-gpu.md")
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_section(path, "gpu_check", header + body)
    print(header)
    return SECTIONS


if __name__ == "__main__":
    main()
