"""Build the native C module with cffi at install (see semantic_jpeg/native/build_native.py)."""
from setuptools import setup

setup(cffi_modules=["semantic_jpeg/native/build_native.py:ffibuilder"])
