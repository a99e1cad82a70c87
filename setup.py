"""Maps the top-level folders into the one `mqbench.*` import namespace.

The top-level folders are the architecture (see the design): `codecs/` is imported as
`mqbench.codecs`, `broker/` as `mqbench.broker`, and so on. A top-level package named `codecs`
would be shadowed by the standard library's, hence the mapping. Sub-packages are found here so
that adding one never needs an edit to packaging metadata.
"""
from setuptools import Extension, find_packages, setup

PACKAGE_DIRS = {
    "mqbench": "mqbench",
    "mqbench.codecs": "codecs",
    "mqbench.broker": "broker",
    "mqbench.migrate": "migrate",
    "mqbench.workloads": "workloads",
}

packages = []
for package, folder in PACKAGE_DIRS.items():
    packages.append(package)
    packages.extend(f"{package}.{sub}" for sub in find_packages(folder))

# Compiled accelerators (see mqbench/native.py): (module name, C sources). Each is optional: when it
# does not build, the install goes on and the pure-Python module beside it is used.
NATIVE_MODULES: list[tuple[str, list[str]]] = [
]

ext_modules = [Extension(name, sources, optional=True, extra_compile_args=["-O2"])
               for name, sources in NATIVE_MODULES]

setup(packages=packages, package_dir=PACKAGE_DIRS, ext_modules=ext_modules)
