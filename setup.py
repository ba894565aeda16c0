"""Builds cfutures._cfutures: python/src plus the C core, linked in
statically (see pyproject.toml for the package metadata)."""
import glob
import os
import platform
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CORE = [path for part in ('core', 'threads', 'processes', 'platform')
        for path in sorted(glob.glob('src/%s/*.c' % part))]

# The core's thread-locals through TLS descriptors, as CMakeLists.txt
# builds them: without, each access is a call to __tls_get_addr.
TLS_DESCRIPTORS = '-mtls-dialect=gnu2'


class BuildExt(build_ext):
    """Adds TLS_DESCRIPTORS on x86 when the compiler takes it."""

    def build_extensions(self):
        if (platform.machine() in ('x86_64', 'AMD64', 'i686')
                and self._compiler_takes(TLS_DESCRIPTORS)):
            for ext in self.extensions:
                ext.extra_compile_args.append(TLS_DESCRIPTORS)
        super().build_extensions()

    def _compiler_takes(self, flag):
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, 'tls.c')
            with open(source, 'w') as f:
                f.write('static _Thread_local int n;\n'
                        'int bump(void) { return ++n; }\n')
            try:
                self.compiler.compile([source], output_dir=tmp,
                                      extra_postargs=[flag, '-fPIC'])
            except Exception:
                return False
        return True


setup(
    ext_modules=[Extension(
        'cfutures._cfutures',
        sources=sorted(glob.glob('python/src/*.c')) + CORE,
        include_dirs=['include', 'src'],
        define_macros=[('_GNU_SOURCE', None)],
        extra_compile_args=['-std=c11', '-fvisibility=hidden'],
        libraries=['m'],
    )],
    cmdclass={'build_ext': BuildExt},
    # Not ./build: that is where `make` puts the CMake build.
    options={'build': {'build_base': 'build-python'}},
)
