"""The C++ CPU kernel itself (torch.ops.sea_kernels.sea_fwd_cpu, through cpp_backend.sea_forward
where possible): what the per-backend table (tests/test_backends_agree.py) cannot see — its
blocked and threaded paths on large shapes, its own argument checks and error messages, its fake
kernel (opcheck) and the standalone CMake build with its ctest (the kernel's C++ unit test and the
max-ulp accuracy test of its vectorised exp, csrc/sea_exp.h).
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
    from sea_kernels.op import cpp_backend as _cpp

    if not _cpp.ensure():  # registers the op's fake kernel (cpp_backend._register_fake)
        raise RuntimeError(_cpp.CPP_ERROR)
except Exception as exc:  # not built, or built against another torch
    pytest.skip(f"C++ extension sea_kernels._C not importable ({type(exc).__name__}: {exc}); "
                "build it with `pip install --no-build-isolation -e .`", allow_module_level=True)

from helpers import make_problem, reference_rows, rel_err

from sea_kernels.op import cpp_backend
from sea_kernels.op.call import Hyper

ROOT = Path(__file__).resolve().parents[1]
OP = torch.ops.sea_kernels.sea_fwd_cpu
PAPER = dict(alpha=0.01, eta=0.8, lam=0.1, delta=0.0)


def run(x, y, w, s, negative_only=False, compute_grad=True, group_size=None, bias=None, **hyper):
    """cpp_backend.sea_forward (the backend contract): (losses, dW) without a bias, (losses, dW,
    db) with one."""
    h = {**PAPER, **hyper}
    out = cpp_backend.sea_forward(x, y, w, s, Hyper(h["alpha"], h["eta"], h["lam"], h["delta"],
                                                    negative_only, group_size or None),
                                  compute_grad, bias)
    return out if bias is not None else out[:2]


def problem(b, d, c, dtype, seed, with_bias=True):
    x, y, w = make_problem(b, d, c, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    s = torch.rand(b, generator=g, dtype=torch.float64)
    bias = 0.5 * torch.randn(c, generator=g, dtype=torch.float64) if with_bias else None
    return (x.to(dtype), y, w.to(dtype), s.to(dtype),
            None if bias is None else bias.to(dtype))


@pytest.mark.parametrize("b,d,c", [(70, 16384, 151), (300, 65, 7), (600, 20, 80)],
                         ids=["norms_from_AWt_in_two_row_blocks", "blocked_gram_uneven",
                              "blocked_gram_C_ge_64"])
def test_float64_blocked_paths(b, d, c):
    """Shapes that take the kernel's blocked paths: ‖g‖ from row blocks of A'Wᵀ (C > 2b), and
    the block-triangular Gram products K = XXᵀ, M = WᵀW split over threads."""
    x, y, w = make_problem(b, d, c, seed=b + d + c)
    s = torch.rand(b, dtype=torch.float64)
    loss, grad = run(x, y, w, s)[:2]
    ref_loss, ref_grad = reference_rows(x, y, w, s, **PAPER)
    assert loss.dtype == grad.dtype == torch.float64
    assert rel_err(loss, ref_loss) < 1e-10 and rel_err(grad, ref_grad) < 1e-10



def test_groups_in_parallel_match_groups_in_turn():
    """The groups run in parallel (enough of them for every thread) or in turn (one thread)."""
    x, y, w, s, bias = problem(200, 24, 7, torch.float64, seed=11)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = run(x, y, w, s, group_size=8, bias=bias)
    finally:
        torch.set_num_threads(threads)
    parallel = run(x, y, w, s, group_size=8, bias=bias)
    for a, p in zip(serial, parallel):
        assert rel_err(p, a) < 1e-13


def test_outputs_without_grad_and_the_compute_dtype():
    """compute_grad=False: the same losses, empty dW and db; every output in row_scale's dtype
    (the compute dtype the host decided, op/call.py), whatever the inputs' dtypes."""
    x, y, w, s, bias = problem(7, 10, 4, torch.float32, seed=12)
    losses, dw, db = run(x, y, w, s, compute_grad=False, group_size=3, bias=bias)
    assert dw.shape == (0,) and db.shape == (0,) and losses.dtype == torch.float32
    assert torch.equal(losses, run(x, y, w, s, group_size=3, bias=bias)[0])
    out = run(x, y, w, s.double(), group_size=3, bias=bias.double())
    assert [t.dtype for t in out] == [torch.float64] * 3 and out[2].shape == (4,)
    raw = OP(x, y, w, s, 0.01, 0.8, 0.1, 0.0, False, True, 3, None)
    assert len(raw) == 4 and raw[2].shape == (0,) and raw[3].shape == (0,)   # no input_grad
    raw = OP(x, y, w, s, 0.01, 0.8, 0.1, 0.0, False, False, 3, None, True)
    assert raw[1].shape == (0,) and raw[3].shape == x.shape and raw[3].dtype == torch.float32


def test_classes_below_two_are_refused():
    x = torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 2 classes"):
        run(x, torch.zeros(4, dtype=torch.long), torch.randn(3, 1, dtype=torch.float64),
            torch.ones(4, dtype=torch.float64))


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
        run(args["x"], args["y"], args["w"], args["s"])


@pytest.mark.parametrize("case,error,match", [
    ("group", ValueError, "group_size must be"), ("bias_len", RuntimeError, "bias must have shape"),
    ("bias_2d", RuntimeError, "bias must have shape"),
    ("bias_int", RuntimeError, "floating point")])
def test_group_and_bias_errors(case, error, match):
    x, y, w, s, bias = problem(5, 6, 3, torch.float64, seed=13)
    group, bias = {"group": (-1, bias), "bias_len": (0, bias[:2]), "bias_2d": (0, bias[None]),
                   "bias_int": (2, bias.long())}[case]
    with pytest.raises(error, match=match):
        run(x, y, w, s, group_size=group, bias=bias)


def test_computes_in_the_dtype_of_row_scale():
    """Float64 inputs with a float32 row_scale: the kernel computes in float32 (the host's compute
    dtype is the row scale's), to float32 rounding of the float64 result."""
    x, y, w, s, _ = problem(9, 40, 6, torch.float64, seed=3, with_bias=False)
    loss, grad = run(x, y, w, s.float())
    assert loss.dtype == grad.dtype == torch.float32
    assert rel_err(grad.double(), run(x, y, w, s)[1]) < 1e-5


@pytest.mark.parametrize("input_grad", [False, True], ids=["", "input_grad"])
@pytest.mark.parametrize("with_bias", [None, False, True], ids=["old_schema", "nobias", "bias"])
@pytest.mark.parametrize("compute_grad", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_opcheck(dtype, compute_grad, with_bias, input_grad):
    """The op's fake kernel and registration, with the call without group_size/bias too, and
    with the input gradient (the fourth output)."""
    x, y, w, s, bias = problem(7, 13, 5, dtype, seed=14, with_bias=bool(with_bias))
    tail = () if with_bias is None else (3, bias)
    if input_grad:
        tail = (tail or (None, None)) + (True,)
    torch.library.opcheck(OP, (x, y, w, s, 0.01, 0.8, 0.1, 0.0, False, compute_grad) + tail)


def test_fake_kernel_shapes_and_dtypes():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        x, w = torch.empty(6, 11, dtype=torch.bfloat16), torch.empty(11, 4, dtype=torch.float64)
        loss, grad, _, _ = OP(x, torch.zeros(6, dtype=torch.long), w,
                              torch.ones(6, dtype=torch.float64), 0.01, 0.8, 0.1, 0.0, False,
                              True)
        assert loss.shape == (6,) and grad.shape == (11, 4)
        assert loss.dtype == grad.dtype == torch.float64
        _, grad, _, dx = OP(x, torch.zeros(6, dtype=torch.long), w.float(), torch.ones(6), 0.01,
                            0.8, 0.1, 0.0, False, False, None, None, True)
        assert grad.shape == (0,) and grad.dtype == torch.float32
        assert dx.shape == (6, 11) and dx.dtype == torch.float32


def test_fake_kernel_groups_and_bias():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        x, w = torch.empty(6, 11), torch.empty(11, 4)
        y, s = torch.zeros(6, dtype=torch.long), torch.ones(6)
        losses, dw, db, _ = OP(x, y, w, s.double(), 0.01, 0.8, 0.1, 0.0, False, True, 2,
                               torch.empty(4, dtype=torch.float64))
        assert losses.shape == (6,) and dw.shape == (11, 4) and db.shape == (4,)
        assert losses.dtype == dw.dtype == db.dtype == torch.float64
        _, dw, db, _ = OP(x, y, w, s, 0.01, 0.8, 0.1, 0.0, False, False, 2, torch.empty(4))
        assert dw.shape == db.shape == (0,) and db.dtype == torch.float32
        _, _, db, _ = OP(x, y, w, s, 0.01, 0.8, 0.1, 0.0, False, True)
        assert db.shape == (0,)


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
