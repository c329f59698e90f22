"""One command for a CUDA machine: build the extension, run the GPU tests, time the kernels
and the end-to-end sampler, and write benchmarks/RESULTS-gpu.md naming the card.

    TORCH_CUDA_ARCH_LIST=9.0 python benchmarks/gpu_check.py [--out DIR] [--skip-build]

Tables: tridiag_eigh vs torch.linalg.eigh on the dense T; the fused reorth step vs the same
step in plain torch ops; inv_sqrt_apply with the extension vs FASTLANCZOS_BACKEND=torch on a
dense operator and on the Gauss-Newton product of MLPs with 1 to 10 million parameters,
with the share of time spent outside the operator products, and a host-sync check.
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


def cuda_time(fn, reps):
    import torch
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


def kernels():
    import torch
    from bench_kernels import bench_eigh, bench_reorth
    dev = torch.device("cuda")
    for k in (1, 16, 256, 1024):
        sizes = [(k, m) for m in (16, 64, 128, 512)]
        bench_eigh(dev, sizes, 10 if k <= 256 else 3)
    bench_reorth(dev, [(4, 64, 63, 10**6), (8, 64, 63, 10**6), (8, 64, 63, 10**7)], 10)


def curvature_blocks():
    script = ROOT / "benchmarks" / "bench_curvature.py"
    if not script.exists():
        print("benchmarks/bench_curvature.py not present")
        return
    out = subprocess.run([sys.executable, str(script), "--device", "cuda"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    print("\n".join((out.stdout + out.stderr).strip().splitlines()[-20:]))


def mlp_ggn(n_hidden, batch=4096, dtype=None):
    """A Gauss-Newton product J^T H J of a cross-entropy MLP on random MNIST-shaped data,
    written directly with torch.func: one forward (vjp) and a vmapped jvp per block."""
    import torch
    from torch.func import functional_call, jvp, vjp, vmap
    torch.manual_seed(0)
    dims = [784, *n_hidden, 10]
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
    model = torch.nn.Sequential(*layers[:-1]).cuda()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])
    X = torch.randn(batch, 784, device="cuda")

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


def end_to_end():
    import torch

    import fastlanczos as fl
    print(f"{'operator':>22} {'n':>10} {'k':>3} {'m':>3} {'ext s':>8} {'torch s':>8} "
          f"{'speed-up':>8} {'hvp s':>8} {'outside hvp (ext)':>18} {'(torch)':>8}")
    k, m = 8, 64
    cases = [("dense 16384", None, 16384)]
    cases += [("MLP GGN 784-1024-256", (1024, 256), None),
              ("MLP GGN 784-2048-4096", (2048, 4096), None)]
    for name, hidden, n in cases:
        if hidden is None:
            A = torch.randn(n, n, device="cuda") / n**0.5
            A = A @ A.T + 0.1 * torch.eye(n, device="cuda")

            def hvp(V, A=A):
                return V @ A
        else:
            hvp, n = mlp_ggn(hidden)
        z = torch.randn(k, n, device="cuda")
        shift = 1e-2

        def run(z=z, hvp=hvp, shift=shift):
            return fl.inv_sqrt_apply(hvp, z, m, shift=shift, check=False)

        os.environ.pop("FASTLANCZOS_BACKEND", None)
        t_ext = cuda_time(run, 2)
        os.environ["FASTLANCZOS_BACKEND"] = "torch"
        t_torch = cuda_time(run, 2)
        os.environ.pop("FASTLANCZOS_BACKEND", None)
        t_hvp = cuda_time(lambda z=z, hvp=hvp: [hvp(z) for _ in range(m)], 2)
        print(f"{name:>22} {n:>10} {k:>3} {m:>3} {t_ext:>8.3f} {t_torch:>8.3f} "
              f"{t_torch / t_ext:>7.2f}x {t_hvp:>8.3f} {1 - t_hvp / t_ext:>17.1%} "
              f"{1 - t_hvp / t_torch:>8.1%}")
        del z, hvp
        torch.cuda.empty_cache()


def sync_check():
    import torch

    import fastlanczos as fl
    A = torch.randn(4096, 4096, device="cuda") / 64
    A = A @ A.T + 0.1 * torch.eye(4096, device="cuda")
    z = torch.randn(8, 4096, device="cuda")
    fl.inv_sqrt_apply(A, z, 16, check=False)
    torch.cuda.set_sync_debug_mode("error")
    try:
        fl.inv_sqrt_apply(A, z, 64, check=False)
        print("fixed m = 64, k = 8, check=False: zero host synchronizations (sync debug 'error')")
    finally:
        torch.cuda.set_sync_debug_mode("default")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks"))
    parser.add_argument("--skip-build", action="store_true")
    args = parser.parse_args()
    if not args.skip_build:
        section("Build (setup.py build_ext --inplace, FORCE_CUDA=1)")(build)
    import torch
    card = torch.cuda.get_device_name()
    header = (f"# GPU results\n\nCard: {card}; torch {torch.__version__} (CUDA "
              f"{torch.version.cuda}); {time.strftime('%Y-%m-%d')}; produced by "
              "`python benchmarks/gpu_check.py`.\n")
    section("GPU tests (pytest -k 'cuda or ops or sync')")(run_tests)
    section("Kernels: tridiag_eigh and the fused reorth step")(kernels)
    section("End to end: inv_sqrt_apply, k = 8, m = 64, float32")(end_to_end)
    section("Host synchronization")(sync_check)
    section("Curvature products: block of k vs k single products")(curvature_blocks)
    body = "".join(f"\n## {t}\n\n```\n{x}\n```\n" for t, x in SECTIONS)
    # Its own section of the file: compare.py --device cuda writes another one beside it.
    from report import write_section

    for path in {Path(args.out) / "RESULTS-gpu.md", ROOT / "benchmarks" / "RESULTS-gpu.md"}:
        write_section(path, "gpu_check", header + body)
    print(header)


if __name__ == "__main__":
    main()
