"""cffi_modules is not a [project] key, so the shim extension is declared here."""
from setuptools import setup

setup(cffi_modules=["xdna_emu/_shim_build.py:ffibuilder"])
