"""torch.distributed on gloo, 2 processes on this machine: data-parallel posteriors and
products, and parameter-sharded Lanczos, each against the single-process run on the full
data / whole vectors (float64, 1e-12). One spawn runs every scenario (tests/dist_worker.py);
a hung collective fails within the process group's 30 s timeout or the join deadline."""

import time

import pytest
import torch
import torch.distributed as dist

import fastlanczos
from fastlanczos.laplace.marglik import log_marginal_likelihood

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

DEADLINE = 120.0  # seconds for both processes, startup included (this machine is shared)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    import dist_worker
    import torch.multiprocessing as mp

    path = tmp_path_factory.mktemp("dist")
    ctx = mp.start_processes(dist_worker.run, args=(2, str(path)), nprocs=2, join=False,
                             start_method="spawn")
    end = time.monotonic() + DEADLINE
    while not ctx.join(timeout=1.0):
        if time.monotonic() > end:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the 2 gloo processes did not finish within {DEADLINE:.0f} s")
    return [torch.load(path / f"rank{r}.pt", weights_only=False) for r in range(2)]


def close(a, b, tol=1e-12, what=""):
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    assert (a - b).abs().max() <= tol * b.abs().max(), (what, float((a - b).abs().max()))


@pytest.fixture(scope="module")
def reference():
    import dist_worker

    model, x, y = dist_worker.model_and_data()
    post = fastlanczos.LaplacePosterior(model, torch.nn.CrossEntropyLoss(), (x, y),
                                        prior_precision=0.5)
    return dist_worker.posterior_results(post)


@pytest.mark.parametrize("case", ["uneven", "empty", "ddp"])
def test_data_parallel_posterior_equals_full_data(ranks, reference, case):
    for rank in ranks:
        got = rank[case]
        for key in ("product", "diagonal", "samples"):
            close(got[key], reference[key], what=key)
        assert abs(got["marglik"] - reference["marglik"]) <= 1e-12 * abs(reference["marglik"])
    for key in ("samples", "samples_auto"):  # same z, same sketch, same run on every rank
        assert torch.equal(ranks[0][case][key], ranks[1][case][key])


def test_data_parallel_product_sums_the_ranks(ranks):
    import dist_worker

    z = torch.randn(3, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    want = fastlanczos.inv_sqrt_apply(dist_worker.spd(12), z, 12)
    for rank in ranks:
        close(rank["dp_apply"], want)
    evals, evecs = torch.linalg.eigh(dist_worker.spd(12))  # and the dense truth
    close(want, z @ (evecs * evals.rsqrt()) @ evecs.T, 1e-10)


@pytest.mark.parametrize("case", ["uneven", "empty"])
def test_sharded_recurrence_equals_unsharded(ranks, case):
    import dist_worker

    A = dist_worker.spd(40)
    z = torch.randn(3, 40, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    # reorth="none" over few steps: once its basis loses orthogonality (by m ~ 30 here),
    # rounding differences of 1e-16 grow to 1e-5 between any two summation orders
    want = {"full": fastlanczos.inv_sqrt_apply(A, z, 30),
            "none": fastlanczos.inv_sqrt_apply(A, z, 12, reorth="none"),
            "tol": fastlanczos.inv_sqrt_apply(A, z, 40, tol=1e-10, return_info=True),
            "root_diag": fastlanczos.inv_root_apply(A, z, 30, precondition=torch.diagonal(A)),
            "lanczos": fastlanczos.lanczos(A, z, 20)}
    got = [rank["sharded_" + case] for rank in ranks]
    for key in ("full", "none", "root_diag"):
        close(torch.cat([g[key] for g in got], dim=1), want[key], what=key)
    x, info = want["tol"]
    close(torch.cat([g["tol"][0] for g in got], dim=1), x, what="tol")
    for g in got:
        assert torch.equal(g["tol"][1].steps, info.steps)  # the same stopping decisions
    res = want["lanczos"]
    for g in got:
        close(g["lanczos"].alpha, res.alpha, what="alpha")
        close(g["lanczos"].beta, res.beta, what="beta")
    close(torch.cat([g["lanczos"].basis for g in got], dim=2), res.basis, 1e-10, what="basis")
    evals, evecs = torch.linalg.eigh(A)  # and the dense truth, to Lanczos' accuracy
    close(torch.cat([g["tol"][0] for g in got], dim=1), z @ (evecs * evals.rsqrt()) @ evecs.T,
          1e-8, what="dense")


def test_ranks_that_disagree_fail_together(ranks):
    for rank in ranks:
        assert "the ranks passed different" in rank["mismatch"]


def test_without_process_group_the_options_say_so():
    z = torch.randn(2, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="init_process_group"):
        fastlanczos.inv_sqrt_apply(lambda V: V, z, 3, shard_group=object())
    with pytest.raises(ValueError, match="callable"):
        fastlanczos.inv_sqrt_apply(torch.eye(5, dtype=torch.float64), z, 3,
                                   shard_group=object())
    from fastlanczos.distributed import data_parallel
    with pytest.raises(ValueError, match="init_process_group"):
        data_parallel(lambda V: V)
    _ = log_marginal_likelihood  # imported for the reference fixture's module
