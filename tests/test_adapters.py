"""Every operator form (SciPy, torch sparse, NumPy, CuPy) against the dense float64 answer,
the array type that comes back, and the mismatches that must be refused.

CuPy cases carry 'cupy' in their names (select them with -k cupy) and skip visibly without
CuPy or a GPU."""

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import torch
from conftest import dense_funm

import fastlanczos as fl
from fastlanczos.errors import LanczosInputError

N = 60


def _spd(n=N, seed=0):
    """A sparse SPD scipy CSR matrix (random pattern, diagonally dominant)."""
    B = scipy.sparse.random(n, n, density=0.08, random_state=seed, format="csr")
    B = B + B.T
    return (B + scipy.sparse.diags(np.asarray(abs(B).sum(axis=1)).ravel() + 0.5)).tocsr()


def _reference(Q, z):
    return dense_funm(torch.from_numpy(Q.toarray()), torch.as_tensor(np.asarray(z)),
                      lambda t: t.rsqrt()).numpy()


def _z(shape, seed=1, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _torch_csr(Q):
    return torch.sparse_csr_tensor(torch.from_numpy(Q.indptr).long(),
                                   torch.from_numpy(Q.indices).long(),
                                   torch.from_numpy(Q.data), Q.shape)


class _MatvecOnly(scipy.sparse.linalg.LinearOperator):
    """A LinearOperator subclass with only _matvec: blocks go through SciPy's column loop."""

    def __init__(self, Q):
        super().__init__(Q.dtype, Q.shape)
        self.Q = Q

    def _matvec(self, x):
        return self.Q @ x


NUMPY_FORMS = {
    "csr_matrix": lambda Q: Q,
    "csr_array": scipy.sparse.csr_array,
    "csc_matrix": lambda Q: Q.tocsc(),
    "coo_matrix": lambda Q: Q.tocoo(),
    "linear_operator": scipy.sparse.linalg.aslinearoperator,
    "linear_operator_matvec_only": _MatvecOnly,
    "numpy_dense": lambda Q: Q.toarray(),
    "numpy_callable": lambda Q: (lambda v: Q @ v.T if v.ndim == 1 else (Q @ v.T).T),
}

TORCH_FORMS = {
    "torch_coo": lambda Q: torch.from_numpy(Q.toarray()).to_sparse(),
    "torch_coo_uncoalesced": lambda Q: torch.sparse_coo_tensor(
        torch.from_numpy(np.vstack(Q.tocoo().coords)).repeat(1, 2),
        torch.from_numpy(np.concatenate([Q.tocoo().data / 2] * 2)), Q.shape),
    "torch_csr": _torch_csr,
    "torch_dense": lambda Q: torch.from_numpy(Q.toarray()),
    "scipy_csr_with_torch_z": lambda Q: Q,
    "scipy_linear_operator_with_torch_z": scipy.sparse.linalg.aslinearoperator,
}


@pytest.mark.parametrize("form", list(NUMPY_FORMS))
@pytest.mark.parametrize("shape", [(N,), (3, N)])
def test_numpy_forms_match_dense(form, shape):
    Q = _spd()
    z = _z(shape)
    x = fl.inv_sqrt_apply(NUMPY_FORMS[form](Q), z, N, tol=1e-12)
    assert type(x) is np.ndarray and x.dtype == np.float64 and x.shape == shape
    ref = _reference(Q, z)
    assert np.linalg.norm(x - ref) <= 1e-9 * np.linalg.norm(ref)


@pytest.mark.parametrize("form", list(TORCH_FORMS))
@pytest.mark.parametrize("shape", [(N,), (3, N)])
def test_torch_forms_match_dense(form, shape):
    Q = _spd()
    z = torch.from_numpy(_z(shape))
    x = fl.inv_sqrt_apply(TORCH_FORMS[form](Q), z, N, tol=1e-12)
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float64 and x.shape == shape
    ref = _reference(Q, z)
    assert np.linalg.norm(x.numpy() - ref) <= 1e-9 * np.linalg.norm(ref)


def test_float32_round_trip_numpy():
    Q = _spd().astype(np.float32)
    z = _z((2, N), dtype=np.float32)
    x = fl.inv_sqrt_apply(Q, z, 30, tol=1e-5)
    assert type(x) is np.ndarray and x.dtype == np.float32 and x.shape == (2, N)
    ref = _reference(Q.astype(np.float64), z.astype(np.float64))
    assert np.linalg.norm(x - ref) <= 1e-4 * np.linalg.norm(ref)


def test_numpy_z_is_shared_not_copied_and_never_written():
    Q = _spd()
    z = _z((2, N))
    z.flags.writeable = False  # a read-only z works (and would raise if written into)
    before = z.copy()
    x = fl.funm_apply(Q, z, "inv", N, tol=1e-12)
    np.testing.assert_array_equal(z, before)
    np.testing.assert_allclose(Q @ x.T, z.T, rtol=0, atol=1e-9)


def test_numpy_z_with_negative_strides():
    Q = _spd()
    z = _z((N,))[::-1]
    np.testing.assert_allclose(fl.inv_sqrt_apply(Q, z, N, tol=1e-12), _reference(Q, z.copy()),
                               rtol=1e-9, atol=1e-12)


def test_funm_info_stays_torch_for_numpy_input():
    Q = _spd()
    x, info = fl.funm_apply(Q, _z((2, N)), "sqrt", N, tol=1e-10, return_info=True)
    assert type(x) is np.ndarray
    assert all(isinstance(getattr(info, f), torch.Tensor) for f in info._fields[:5])
    assert bool(info.converged.all())


def test_lanczos_returns_numpy_fields_for_numpy_input():
    Q = _spd()
    res = fl.lanczos(Q, _z((2, N)), 10)
    assert all(type(t) is np.ndarray for t in res)
    V = res.basis[0]
    np.testing.assert_allclose(V @ V.T, np.eye(10), atol=1e-12)
    T = np.diag(res.alpha[0]) + np.diag(res.beta[0], 1) + np.diag(res.beta[0], -1)
    lhs = Q @ V.T
    rhs = V.T @ T + np.outer(res.residual[0], np.eye(10)[-1])
    np.testing.assert_allclose(lhs, rhs, atol=1e-10)


def test_lanczos_single_vector_numpy():
    res = fl.lanczos(_spd(), _z((N,)), 5)
    assert res.basis.shape == (5, N) and type(res.alpha) is np.ndarray


@pytest.mark.parametrize("make, z, match", [
    (lambda Q: Q[:, :-1], _z((N,)), "square"),
    (lambda Q: scipy.sparse.linalg.aslinearoperator(Q[:, :-1]), _z((N,)), "square"),
    (lambda Q: _torch_csr(Q[:-1, :-1].tocsr()), torch.zeros(N, dtype=torch.float64), "size"),
    (lambda Q: Q, _z((N - 1,)), "size"),
    (lambda Q: Q, _z((N,), dtype=np.float32), "dtype"),
    (lambda Q: _torch_csr(Q).to(torch.float32), torch.zeros(N, dtype=torch.float64), "dtype"),
    (lambda Q: "not an operator", _z((N,)), "hvp must be"),
    (lambda Q: (lambda v: list(v)), _z((N,)), "must return"),
    (lambda Q: Q.toarray()[None], _z((N,)), "square"),
])
def test_mismatches_are_clear_errors(make, z, match):
    with pytest.raises(LanczosInputError, match=match):
        fl.inv_sqrt_apply(make(_spd()), z, 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_scipy_operator_with_cuda_z_is_refused():
    with pytest.raises(LanczosInputError, match="CPU"):
        fl.inv_sqrt_apply(_spd(), torch.zeros(N, dtype=torch.float64, device="cuda"), 5)


def _cupy():
    cupy = pytest.importorskip("cupy", reason="CuPy not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return cupy


@pytest.mark.parametrize("form", ["dense", "csr", "csc", "coo", "linear_operator"])
@pytest.mark.parametrize("shape", [(N,), (3, N)])
def test_cupy_forms_match_dense_and_stay_on_gpu(form, shape):
    cupy = _cupy()
    import cupyx.scipy.sparse as cs
    import cupyx.scipy.sparse.linalg as cl

    Q = _spd()
    Qc = cs.csr_matrix(Q)
    op = {"dense": lambda: cupy.asarray(Q.toarray()), "csr": lambda: Qc,
          "csc": lambda: Qc.tocsc(), "coo": lambda: Qc.tocoo(),
          "linear_operator": lambda: cl.aslinearoperator(Qc)}[form]()
    z = _z(shape)
    x = fl.inv_sqrt_apply(op, cupy.asarray(z), N, tol=1e-12)
    assert isinstance(x, cupy.ndarray) and x.dtype == cupy.float64 and x.shape == shape
    ref = _reference(Q, z)
    assert np.linalg.norm(cupy.asnumpy(x) - ref) <= 1e-9 * np.linalg.norm(ref)


def test_cupy_z_is_a_zero_copy_view():
    cupy = _cupy()
    from fastlanczos.operators import adapt

    z = cupy.ones((2, N))
    _, zt, restore = adapt(cupy.asarray(_spd().toarray()), z)
    assert zt.data_ptr() == z.data.ptr and zt.is_cuda
    assert restore(zt).data.ptr == z.data.ptr


def test_cupy_mismatches_are_clear_errors():
    cupy = _cupy()
    import cupyx.scipy.sparse as cs

    Q = _spd()
    with pytest.raises(LanczosInputError, match="GPU"):
        fl.inv_sqrt_apply(cs.csr_matrix(Q), _z((N,)), 5)  # CuPy operator, NumPy z
    with pytest.raises(LanczosInputError, match="CPU"):
        fl.inv_sqrt_apply(Q, cupy.asarray(_z((N,))), 5)  # SciPy operator, CuPy z
    with pytest.raises(LanczosInputError, match="same side"):
        fl.inv_sqrt_apply(Q.toarray(), cupy.asarray(_z((N,))), 5)
    with pytest.raises(LanczosInputError, match="size"):
        fl.inv_sqrt_apply(cs.csr_matrix(Q), cupy.zeros(N - 1), 5)
    with pytest.raises(LanczosInputError, match="dtype"):
        fl.inv_sqrt_apply(cs.csr_matrix(Q), cupy.zeros(N, dtype=cupy.float32), 5)


def test_cupy_lanczos_fields_are_cupy():
    cupy = _cupy()
    import cupyx.scipy.sparse as cs

    res = fl.lanczos(cs.csr_matrix(_spd()), cupy.asarray(_z((2, N))), 8)
    assert all(isinstance(t, cupy.ndarray) for t in res)


@pytest.mark.parametrize("shape", [(6,), (3, 6)])
def test_shift_is_added_in_place_only_to_a_fresh_product(shape):
    """(A + shift I) V: added in place to the product when the product is its own tensor
    (no new (k, n) allocation per step), never into V itself when the product is V (an
    identity hvp), and the answers of inv_sqrt_apply are the same either way."""
    from fastlanczos.operators import as_block_matvec
    z = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    V = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    V = V[:1] if len(shape) == 1 else V
    kept = V.clone()
    identity = as_block_matvec(lambda v: v, z, 2.0)
    torch.testing.assert_close(identity(V), 3.0 * kept, rtol=0, atol=0)
    torch.testing.assert_close(V, kept, rtol=0, atol=0)  # V was not written
    A = torch.diag(torch.arange(1.0, 7.0, dtype=torch.float64))
    produced = []
    product = as_block_matvec(lambda v: produced.append(v @ A) or produced[-1], z, 0.5)
    out = product(V)
    torch.testing.assert_close(out, V @ A + 0.5 * V)
    assert out.untyped_storage().data_ptr() == produced[-1].untyped_storage().data_ptr()
    ref = dense_funm(A + 2.0 * torch.eye(6, dtype=torch.float64), z, torch.rsqrt)
    for hvp in (lambda v: v @ A, A):
        x = fl.inv_sqrt_apply(hvp, z, 6, shift=2.0)
        torch.testing.assert_close(x, ref.reshape(x.shape), rtol=1e-10, atol=1e-12)
