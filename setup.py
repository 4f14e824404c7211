from setuptools import setup

setup(cffi_modules=["dataplane/_build.py:ffibuilder"])
