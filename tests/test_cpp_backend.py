"""The C++ CPU op torch.ops.sea_kernels.sea_fwd_cpu against the paper-literal float64 reference.

The op returns per-row losses ℓ(x̃_i) and dW = ∂(Σ_i s_i ℓ(x̃_i))/∂W for row weights s. Also: its
fake kernel (opcheck), argument errors, and the standalone CMake build with its ctest (the
kernel's C++ unit test and the max-ulp accuracy test of its vectorised exp, csrc/sea_exp.h).
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

try:
    import sea_kernels._C  # noqa: F401  (registers the op)
    import sea_kernels.op.cpp_backend  # noqa: F401  (registers its fake kernel)
except Exception as exc:  # not built, or built against another torch
    pytest.skip(f"C++ extension sea_kernels._C not importable ({type(exc).__name__}: {exc}); "
                "build it with `pip install --no-build-isolation -e .`", allow_module_level=True)

from helpers import assert_matches_reference, make_problem, reference_rows

from sea_kernels import reference

ROOT = Path(__file__).resolve().parents[1]
OP = torch.ops.sea_kernels.sea_fwd_cpu
PAPER = dict(alpha=0.01, eta=0.8, lam=0.1, delta=0.0)

# A representative subset of b ∈ {1, 2, 7, 256} × d ∈ {3, 130, 1280} × C ∈ {2, 10, 151}
# containing every extreme; C > 2b takes the A Wᵀ route for ‖g‖, C ≤ 2b the WᵀW route.
SHAPES = [(1, 3, 2), (1, 1280, 151), (2, 3, 10), (2, 130, 2), (2, 1280, 151), (7, 3, 151),
          (7, 130, 10), (7, 1280, 2), (256, 3, 2), (256, 3, 151), (256, 130, 10), (256, 1280, 2),
          (256, 1280, 151), (7, 130, 151), (256, 130, 151)]


def run(x, y, w, s, negative_only=False, compute_grad=True, **hyper):
    h = {**PAPER, **hyper}
    return OP(x, y, w, s, h["alpha"], h["eta"], h["lam"], h["delta"], negative_only,
              compute_grad)[:2]  # (the third output, db, is empty without a bias)


def rel_err(got, want):
    return ((got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-300)).item()


def assert_float64(x, y, w, s, negative_only=False, **hyper):
    loss, grad = run(x, y, w, s, negative_only, **hyper)
    ref_loss, ref_grad = reference_rows(x, y, w, s, negative_only, **{**PAPER, **hyper})
    assert loss.dtype == grad.dtype == torch.float64
    assert loss.shape == (x.shape[0],) and grad.shape == w.shape
    assert rel_err(loss, ref_loss) < 1e-10
    assert rel_err(grad, ref_grad) < 1e-10


@pytest.mark.parametrize("b,d,c", SHAPES)
def test_float64_matches_reference(b, d, c):
    x, y, w = make_problem(b, d, c, seed=b * 7919 + d * 31 + c)
    assert_float64(x, y, w, torch.full((b,), 1.0 / b, dtype=torch.float64))


@pytest.mark.parametrize("b,d,c", [(70, 16384, 151), (300, 65, 7), (600, 20, 80)],
                         ids=["norms_from_AWt_in_two_row_blocks", "blocked_gram_uneven",
                              "blocked_gram_C_ge_64"])
def test_float64_blocked_paths(b, d, c):
    """Shapes that take the kernel's blocked paths: ‖g‖ from row blocks of A'Wᵀ (C > 2b), and
    the block-triangular Gram products K = XXᵀ, M = WᵀW split over threads."""
    x, y, w = make_problem(b, d, c, seed=b + d + c)
    assert_float64(x, y, w, torch.rand(b, dtype=torch.float64))


@pytest.mark.parametrize("b,d,c", [(1, 130, 10), (2, 130, 10), (7, 1280, 151), (256, 1280, 10),
                                   (256, 130, 151), (256, 3, 2)])
def test_float32_error_within_reference_float32_error(b, d, c):
    """float32 error vs the float64 reference ≤ 2 × the float32 reference's own + 2e-5."""
    x, y, w = make_problem(b, d, c, seed=b + d + c)
    x32, w32 = x.float(), w.float()
    loss, grad = run(x32, y, w32, torch.full((b,), 1.0 / b))
    assert loss.dtype == grad.dtype == torch.float32
    assert_matches_reference(loss.mean(), grad, x32, y, w32, torch.float32, **PAPER)


@pytest.mark.parametrize("s_kind", ["ones", "random", "zeros", "one_row"])
def test_row_scale_variants(s_kind):
    b = 9
    x, y, w = make_problem(b, 40, 6, seed=3)
    s = {"ones": torch.ones(b), "random": torch.rand(b, generator=torch.Generator().manual_seed(1)),
         "zeros": torch.zeros(b), "one_row": torch.eye(b)[4]}[s_kind].double()
    assert_float64(x, y, w, s)
    # row_scale's dtype is the compute dtype (the host's choice): float32 here.
    loss, grad = run(x, y, w, s.float())
    assert grad.dtype == torch.float32 and rel_err(grad, run(x, y, w, s)[1]) < 1e-5


@pytest.mark.parametrize("b,d,c", [(1, 3, 2), (7, 130, 10), (7, 130, 151), (256, 130, 151)])
def test_negative_only(b, d, c):
    x, y, w = make_problem(b, d, c, seed=11)
    assert_float64(x, y, w, torch.rand(b, dtype=torch.float64), negative_only=True, delta=0.3)


def test_hyperparameters_and_margin():
    x, y, w = make_problem(19, 40, 7, seed=5)
    assert_float64(x, y, w, torch.rand(19, dtype=torch.float64), alpha=0.02, eta=0.4, lam=0.5,
                   delta=1.0)


def test_compute_grad_false_returns_same_losses_and_empty_grad():
    x, y, w = make_problem(7, 130, 10, seed=2)
    s = torch.ones(7, dtype=torch.float64)
    loss, grad = run(x, y, w, s)
    loss2, grad2 = run(x, y, w, s, compute_grad=False)
    assert grad2.shape == (0,) and grad2.dtype == torch.float64
    assert torch.equal(loss, loss2)


def test_non_contiguous_inputs():
    x, y, w = make_problem(33, 130, 10, seed=4)
    s = torch.rand(33, dtype=torch.float64)
    loss, grad = run(x, y, w, s)
    xt = x.t().contiguous().t()                  # column-major x
    wt = w.t().contiguous().t()                  # weight as nn.Linear stores it, transposed
    xs = torch.zeros(33, 260, dtype=torch.float64)[:, ::2].copy_(x)  # strided columns
    ys = torch.stack([y, y], 1)[:, 0]            # strided labels
    ss = torch.stack([s, s], 1)[:, 1]
    for xx, ww, yy, sc in ((xt, w, y, s), (x, wt, y, s), (xs, wt, ys, ss)):
        assert not (xx.is_contiguous() and ww.is_contiguous() and yy.is_contiguous())
        l2, g2 = run(xx, yy, ww, sc)
        assert rel_err(l2, loss) < 1e-13 and rel_err(g2, grad) < 1e-13


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_compute_in_float32(dtype):
    x, y, w = make_problem(16, 64, 5, seed=6)
    s = torch.full((16,), 1 / 16)
    loss, grad = run(x.to(dtype), y, w.to(dtype), s)
    assert loss.dtype == grad.dtype == torch.float32
    ref_loss, ref_grad = reference_rows(x.to(dtype).float(), y, w.to(dtype).float(), s, **PAPER)
    assert rel_err(loss, ref_loss) < 1e-4 and rel_err(grad, ref_grad) < 1e-4


def test_mixed_float32_float64_computes_in_float64():
    x, y, w = make_problem(8, 20, 4, seed=7)
    loss, grad = run(x.float(), y, w, torch.ones(8, dtype=torch.float64))   # the host's choice
    assert loss.dtype == grad.dtype == torch.float64
    assert_float64(x.float().double(), y, w, torch.ones(8, dtype=torch.float64))


# ---- corner cases ------------------------------------------------------------------------------

def test_single_row_batch_is_unmoved():
    x, y, w = make_problem(1, 130, 10, seed=8)
    loss, _ = run(x, y, w, torch.ones(1, dtype=torch.float64))
    plain = reference.smoothed_hinge_loss(x @ w, y, 0.1, 0.0, reduction="none")
    assert rel_err(loss, plain) < 1e-12
    assert_float64(x, y, w, torch.ones(1, dtype=torch.float64))


@pytest.mark.parametrize("negative_only", [False, True])
def test_zero_gradient_rows(negative_only):
    """One dominating class makes p_i exactly one-hot at label 0: g_i = 0 for those rows."""
    b, d, c = 12, 30, 5
    g = torch.Generator().manual_seed(9)
    x = torch.nn.functional.normalize(torch.rand(b, d, generator=g, dtype=torch.float64), dim=1)
    w = torch.randn(d, c, generator=g, dtype=torch.float64) * 0.1
    w[:, 0] = 1000.0 / d ** 0.5
    y = torch.tensor([0] * 6 + [1, 2, 3, 4, 1, 2])
    p = torch.softmax(x @ w / 0.1, 1)
    assert (p[:6, 0] == 1).all()                 # the first six rows have an exactly zero gradient
    loss, grad = run(x, y, w, torch.ones(b, dtype=torch.float64), negative_only)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert_float64(x, y, w, torch.ones(b, dtype=torch.float64), negative_only)


def test_small_alpha_dominating_diagonal():
    """α = 0.01 with a large weight: S_ii would dominate its row; masking before softmax is
    exact."""
    x, y, w = make_problem(16, 3, 4, seed=10, weight_scale=30.0 / 3 ** 0.5)
    assert_float64(x, y, w, torch.ones(16, dtype=torch.float64), alpha=0.01)
    loss, grad = run(x.float(), y, w.float(), torch.ones(16))
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()


@pytest.mark.parametrize("hyper", [dict(alpha=1e3), dict(lam=0.01), dict(eta=0.0),
                                   dict(alpha=1e3, lam=0.01, eta=0.0, delta=2.0)],
                         ids=["alpha=1e3", "lam=0.01", "eta=0", "all"])
def test_extreme_hyperparameters(hyper):
    x, y, w = make_problem(9, 130, 10, seed=12)
    assert_float64(x, y, w, torch.rand(9, dtype=torch.float64), **hyper)


def test_eta_zero_is_plain_loss_of_unit_features():
    x, y, w = make_problem(9, 13, 4, seed=13)
    x = x * 3.0                                  # not unit length: x̃ = Π(x)
    loss, _ = run(x, y, w, torch.ones(9, dtype=torch.float64), eta=0.0)
    plain = reference.smoothed_hinge_loss(reference.unit(x) @ w, y, 0.1, 0.0, reduction="none")
    assert rel_err(loss, plain) < 1e-12


# ---- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [-1, 10])
def test_label_out_of_range_is_an_error(bad):
    x, y, w = make_problem(7, 13, 10, seed=14)
    y[3] = bad
    with pytest.raises(RuntimeError, match=r"labels\[3\] = -?\d+ is out of range.*\[0, 10\)"):
        run(x, y, w, torch.ones(7, dtype=torch.float64))


@pytest.mark.parametrize("case,match", [
    ("x_1d", "x must be 2-D"), ("weight_rows", "weight must have shape"),
    ("labels_len", "labels must have shape"), ("scale_len", "row_scale must have shape"),
    ("float_labels", "labels must be an integer tensor"), ("int_x", "floating point")])
def test_argument_errors(case, match):
    x, y, w = make_problem(5, 6, 3, seed=15)
    s = torch.ones(5, dtype=torch.float64)
    args = dict(x=x, y=y, w=w, s=s)
    hyper = {}
    if case == "x_1d":
        args["x"] = x[0]
    elif case == "weight_rows":
        args["w"] = w[:5]
    elif case == "labels_len":
        args["y"] = y[:4]
    elif case == "scale_len":
        args["s"] = s[:4]
    elif case == "float_labels":
        args["y"] = y.double()
    else:
        args["x"] = x.long()
    with pytest.raises(RuntimeError, match=match):
        run(args["x"], args["y"], args["w"], args["s"], **hyper)


# ---- fake kernel, CMake build ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("compute_grad", [True, False])
def test_opcheck(dtype, compute_grad):
    x, y, w = make_problem(7, 13, 5, seed=16)
    args = (x.to(dtype), y, w.to(dtype), torch.ones(7, dtype=dtype), 0.01, 0.8, 0.1, 0.0, False,
            compute_grad)
    torch.library.opcheck(OP, args)


def test_fake_kernel_shapes_and_dtypes():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        x, w = torch.empty(6, 11, dtype=torch.bfloat16), torch.empty(11, 4, dtype=torch.float64)
        loss, grad, _ = OP(x, torch.zeros(6, dtype=torch.long), w,
                           torch.ones(6, dtype=torch.float64), 0.01, 0.8, 0.1, 0.0, False, True)
        assert loss.shape == (6,) and grad.shape == (11, 4)
        assert loss.dtype == grad.dtype == torch.float64
        _, grad, _ = OP(x, torch.zeros(6, dtype=torch.long), w.float(), torch.ones(6), 0.01, 0.8,
                        0.1, 0.0, False, False)
        assert grad.shape == (0,) and grad.dtype == torch.float32


@pytest.fixture(scope="module")
def ctest_run(tmp_path_factory):
    """Configures and builds the standalone CMake project once, runs its ctest verbosely and
    returns the finished ctest process (stdout holds every test's own output)."""
    if shutil.which("cmake") is None or shutil.which("ctest") is None:
        pytest.skip("cmake/ctest not on PATH: the standalone C++ build is not tested")
    build = tmp_path_factory.mktemp("cmake")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # venv ninja
    configure = ["cmake", "-S", str(ROOT), "-B", str(build),
                 f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"]
    if shutil.which("ninja", path=env["PATH"]):
        configure += ["-G", "Ninja"]
    for cmd in (configure, ["cmake", "--build", str(build), "-j", "2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        assert proc.returncode == 0, (f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n"
                                      f"{proc.stderr[-4000:]}")
    return subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure", "-V"],
                          capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.build
def test_cmake_build_and_ctest(ctest_run):
    """Both C++ unit tests build and pass: test_sea_cpu (the kernel against a paper-literal ATen
    implementation) and test_sea_exp (the vectorised exp, standalone)."""
    out = ctest_run.stdout
    assert ctest_run.returncode == 0, f"ctest failed:\n{out[-6000:]}\n{ctest_run.stderr[-2000:]}"
    for name in ("test_sea_cpu", "test_sea_exp"):
        assert re.search(rf"Test\s+#\d+: {name} \.+\s+Passed", out), (
            f"{name} did not pass:\n{out[-4000:]}")
    assert "100% tests passed" in out


@pytest.mark.build
def test_exp_max_ulp_error_within_bound(ctest_run):
    """test_sea_exp measured the max ulp error of sea_exp.h's exp over every float in [−87, 0]
    and a dense double sample over [−708, 0], each within its bound (printed in the report)."""
    out = ctest_run.stdout
    for kind in ("float", "double"):
        m = re.search(rf"(ok  |FAIL) {kind}: max ulp error ([\d.]+|nan) .*bound ([\d.]+)", out)
        assert m, f"no {kind} max ulp line in the ctest output:\n{out[-4000:]}"
        print(m.group(0))
        assert m.group(1) == "ok  " and float(m.group(2)) <= float(m.group(3)), m.group(0)
