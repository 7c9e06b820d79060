"""Backend dispatch from the declarations (op/dispatch.py): what "auto" picks, why an explicit
backend refuses, and the info table. Devices are only declared, never touched: the CUDA cases
run on a CPU-only machine too."""
import io

import pytest
import torch

from sea_kernels.op import cpp_backend, dispatch, torch_backend, triton_backend
from sea_kernels.op.dispatch import BACKENDS_BY_NAME, PRIORITY, resolve_backend
from sea_kernels.params import BACKENDS

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
HALF = (torch.bfloat16, torch.float16)


@pytest.fixture
def triton_ok(monkeypatch):
    """Triton importable and its kernels defined for the interpreter (as under tests/conftest.py
    without a GPU), whatever this machine has; TRITON_INTERPRET unset."""
    monkeypatch.setattr(triton_backend, "AVAILABLE", True)
    monkeypatch.setattr(triton_backend, "INTERPRETED", True)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


@pytest.fixture
def cpp_ok(monkeypatch):
    monkeypatch.setattr(cpp_backend, "CPP_AVAILABLE", True)


def test_declarations_cover_every_backend():
    assert set(BACKENDS_BY_NAME) == set(PRIORITY) == set(BACKENDS) - {"auto"}
    assert PRIORITY[-1] == "torch"
    assert BACKENDS_BY_NAME["torch"].forward is torch_backend.sea_forward
    assert BACKENDS_BY_NAME["cpp"].forward is cpp_backend.sea_forward
    assert BACKENDS_BY_NAME["triton"].forward is triton_backend.sea_forward


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, *HALF])
def test_auto_on_cpu_picks_cpp_when_built(dtype):
    want = "cpp" if cpp_backend.CPP_AVAILABLE else "torch"
    assert resolve_backend("auto", CPU, (dtype,)) == want
    assert resolve_backend("auto", "cpu", (dtype, torch.float32)) == want


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_auto_on_cpu_without_the_extension_picks_torch(monkeypatch, dtype):
    monkeypatch.setattr(cpp_backend, "CPP_AVAILABLE", False)
    monkeypatch.setattr(cpp_backend, "CPP_ERROR", "ImportError: no _C")
    assert resolve_backend("auto", CPU, (dtype,)) == "torch"
    with pytest.raises(ValueError, match="backend='cpp' is not available: ImportError: no _C"):
        resolve_backend("cpp", CPU, (dtype,))


@pytest.mark.parametrize("dtypes", [(torch.float64,), (torch.float32, torch.float64),
                                    (torch.float64, torch.float32)])
def test_auto_on_cuda_sends_float64_to_torch(dtypes):
    """The Triton kernels compute in fp32 and refuse float64; the C++ kernel is CPU-only."""
    assert resolve_backend("auto", CUDA, dtypes) == "torch"
    assert resolve_backend("auto", torch.device("cuda", 1), dtypes) == "torch"


@pytest.mark.parametrize("dtype", [torch.float32, *HALF])
def test_auto_on_cuda_picks_triton_when_importable(dtype):
    want = "triton" if triton_backend.AVAILABLE else "torch"
    assert resolve_backend("auto", CUDA, (dtype,)) == want


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_auto_on_cuda_without_triton_picks_torch(monkeypatch, dtype):
    monkeypatch.setattr(triton_backend, "AVAILABLE", False)
    monkeypatch.setattr(triton_backend, "UNAVAILABLE_REASON", "no triton here")
    assert resolve_backend("auto", CUDA, (dtype,)) == "torch"
    with pytest.raises(ValueError, match="backend='triton' is not available: no triton here"):
        resolve_backend("triton", CUDA, (dtype,))


def test_not_supported_reasons(triton_ok, cpp_ok):
    triton, cpp, eager = (BACKENDS_BY_NAME[n] for n in ("triton", "cpp", "torch"))
    assert triton.not_supported_reasons(CUDA, (torch.float32, *HALF)) == []
    (why,) = triton.not_supported_reasons(CUDA, (torch.float32, torch.float64))
    assert "float64" in why and "float32" in why
    (why,) = cpp.not_supported_reasons(CUDA, (torch.float32,))
    assert "runs on CPU tensors" in why and "cuda" in why
    assert cpp.not_supported_reasons(CPU, (torch.float64, *HALF)) == []
    assert triton.not_supported_reasons("cuda:0", (torch.float16,)) == []   # a string works too
    for device in ("cpu", "cuda", "mps", "meta", "hpu", "xla"):
        assert eager.not_supported_reasons(device, (torch.float64,)) == []
    assert len(triton.not_supported_reasons(CPU, (torch.float64,))) == 2   # device and dtype


def test_explicit_triton_refuses_float64_naming_it(triton_ok):
    with pytest.raises(TypeError, match="backend='triton' computes in float32.*float64"):
        resolve_backend("triton", CUDA, (torch.float64,))
    with pytest.raises(TypeError, match="float64"):
        resolve_backend("triton", CUDA, (torch.float32, torch.float64))
    assert resolve_backend("triton", CUDA, (torch.bfloat16, torch.float32)) == "triton"


def test_explicit_cpp_refuses_other_devices(cpp_ok):
    with pytest.raises(ValueError, match="backend='cpp' runs on CPU tensors, got tensors on meta"):
        resolve_backend("cpp", torch.device("meta"))
    with pytest.raises(ValueError, match="backend='cpp' runs on CPU"):
        resolve_backend("cpp", CUDA, (torch.float64,))
    assert resolve_backend("cpp", CPU, (torch.float64,)) == "cpp"


def test_torch_takes_every_device_and_dtype():
    for device in ("cpu", "cuda", "meta", "mps", "hpu"):
        for dtype in (torch.float32, torch.float64, *HALF):
            assert resolve_backend("torch", torch.device(device), (dtype,)) == "torch"
    assert resolve_backend("auto", torch.device("meta"), (torch.float32,)) == "torch"
    assert resolve_backend("auto", torch.device("hpu"), (torch.float32,)) == "torch"


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("cuda", CPU)


def test_interpreter_counts_only_for_explicit_triton(triton_ok, monkeypatch):
    """TRITON_INTERPRET=1 lets backend="triton" run on CPU tensors (testing); "auto" on the CPU
    never picks the interpreter."""
    with pytest.raises(ValueError, match="runs on CUDA tensors, got tensors on cpu.*"
                                         "TRITON_INTERPRET=1"):
        resolve_backend("triton", CPU)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="runs on CUDA tensors"):
        resolve_backend("triton", CPU)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("triton", CPU, (torch.float32,)) == "triton"
    with pytest.raises(TypeError, match="float64"):     # the interpreter does not add float64
        resolve_backend("triton", CPU, (torch.float64,))
    for dtype in (torch.float32, torch.float64, *HALF):
        assert resolve_backend("auto", CPU, (dtype,)) in ("cpp", "torch")


def test_interpreter_needs_the_kernels_defined_under_it(triton_ok, monkeypatch):
    """TRITON_INTERPRET=1 set after the kernels were compiled for the GPU does not count: they
    cannot run on CPU tensors."""
    monkeypatch.setattr(triton_backend, "INTERPRETED", False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(ValueError, match="runs on CUDA tensors"):
        resolve_backend("triton", CPU)


@pytest.mark.skipif(not triton_backend.AVAILABLE or torch.cuda.is_available(),
                    reason="needs triton and no GPU (tests/conftest.py sets TRITON_INTERPRET=1)")
def test_kernels_are_interpreted_under_conftest():
    assert triton_backend.INTERPRETED and triton_backend.interpreter_on()


def test_info_lists_every_backend_and_the_auto_picks():
    out = io.StringIO()
    dispatch.info(file=out)
    text = out.getvalue()
    lines = text.splitlines()
    for name in BACKENDS_BY_NAME:
        assert any(line.split()[:1] == [name] for line in lines), (name, text)
    picks = next(line for line in lines if line.startswith("auto picks:"))
    for dtype in ("float32", "float64"):
        want = resolve_backend("auto", CPU, (getattr(torch, dtype),))
        assert f"cpu {dtype} → {want}" in picks
    assert " > ".join(PRIORITY) in picks
    status = dispatch.backend_status()
    assert list(status) == list(BACKENDS_BY_NAME)
    assert status["torch"][0]
    assert status["cpp"][0] == cpp_backend.CPP_AVAILABLE


def test_backend_status_without_triton_or_gpu(monkeypatch):
    monkeypatch.setattr(triton_backend, "AVAILABLE", False)
    monkeypatch.setattr(triton_backend, "UNAVAILABLE_REASON", "no triton here")
    assert dispatch.backend_status()["triton"] == (False, "no triton here")
    monkeypatch.setattr(triton_backend, "AVAILABLE", True)
    monkeypatch.setattr(triton_backend, "INTERPRETED", True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    usable, why = dispatch.backend_status()["triton"]
    assert not usable and "none is visible" in why and "TRITON_INTERPRET=1" in why
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    usable, why = dispatch.backend_status()["triton"]
    assert usable and "interpreter" in why
