"""Build hook for the optional compiled int8 scan kernel (service/vectorstore/_int8scan.c).

Everything else is declared in pyproject.toml. The extension is optional: where it cannot be built
(no compiler), the install still succeeds and REID_INDEX_STORAGE=int8 falls back to the bf16 scan
with a warning. No -march flag: the kernel picks AVX-512 VNNI / AVX2 / plain C at run time.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "service.vectorstore._int8scan",
            sources=["service/vectorstore/_int8scan.c"],
            extra_compile_args=["-O3", "-std=c11", "-pthread"],
            extra_link_args=["-pthread"],
            optional=True,
        )
    ]
)
