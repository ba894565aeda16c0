"""Builds cfutures._cfutures: python/src plus the C core, linked in
statically (see pyproject.toml for the package metadata)."""
import glob

from setuptools import Extension, setup

CORE = [path for part in ('core', 'threads', 'processes', 'platform')
        for path in sorted(glob.glob('src/%s/*.c' % part))]

setup(
    ext_modules=[Extension(
        'cfutures._cfutures',
        sources=sorted(glob.glob('python/src/*.c')) + CORE,
        include_dirs=['include', 'src'],
        define_macros=[('_GNU_SOURCE', None)],
        extra_compile_args=['-std=c11', '-fvisibility=hidden'],
        libraries=['m'],
    )],
    # Not ./build: that is where `make` puts the CMake build.
    options={'build': {'build_base': 'build-python'}},
)
