"""cffi builder for ``semantic_jpeg.native._native``.

Every ``NAME.c`` in this folder is compiled into one extension module. Its ``NAME.h`` holds the declarations
Python may call, written so that cffi's ``cdef`` parser reads them (plain prototypes with <stdint.h> types,
no include guards or macros). A component adds kernels by adding a ``NAME.c`` + ``NAME.h`` pair; this file
does not change.
"""
import os
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HEADERS = sorted(HERE.glob("*.h"))
C_SOURCES = [p for p in sorted(HERE.glob("*.c")) if p.name != "_native.c"]  # _native.c: cffi's output

ffibuilder = FFI()
ffibuilder.cdef("\n".join(h.read_text() for h in HEADERS))
ffibuilder.set_source(
    "semantic_jpeg.native._native",
    "#include <stdint.h>\n" + "\n".join(f'#include "{h.name}"' for h in HEADERS),
    sources=[os.path.relpath(p, ROOT) for p in C_SOURCES],
    include_dirs=[os.path.relpath(HERE, ROOT)],
    # Last on the command line, so they override Python's CFLAGS. -fno-wrapv: Python builds with -fwrapv, under
    # which index arithmetic may wrap and most loops stop vectorising (1.6-1.8x slower kernels); no kernel relies
    # on signed overflow. -fno-trapping-math: no kernel reads floating-point exception flags; it lets clipped
    # float -> int conversions vectorise. Neither changes any rounding (unlike -ffast-math).
    extra_compile_args=["/O2"] if sys.platform == "win32" else ["-O3", "-std=c99", "-fno-strict-aliasing",
                                                               "-fno-wrapv", "-fno-trapping-math"],
    libraries=[] if sys.platform == "win32" else ["m"],
)

if __name__ == "__main__":  # python semantic_jpeg/native/build_native.py: rebuild in place for development
    os.chdir(ROOT)
    ffibuilder.compile(verbose=True, target="_native.abi3.so")  # the name pip's build gives it
    for stale in HERE.glob("_native.cpython-*.so"):  # would shadow the fresh build
        stale.unlink()
