"""`python -m sea_kernels`: print versions and which backends are built and usable here (what
`sea_kernels.info()` prints)."""
from sea_kernels.op.dispatch import info

if __name__ == "__main__":
    info()
