"""Maps the top-level folders into the one `mqbench.*` import namespace.

The top-level folders are the architecture (see the design): `codecs/` is imported as
`mqbench.codecs`, `broker/` as `mqbench.broker`, and so on. A top-level package named `codecs`
would be shadowed by the standard library's, hence the mapping. Sub-packages are found here so
that adding one never needs an edit to packaging metadata.
"""
import ast
from pathlib import Path

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



def native_modules() -> dict[str, list[str]]:
    """mqbench/native.py's MODULES literal (module name -> C sources), read without importing
    mqbench (its dependencies are not installed yet when this runs)."""
    tree = ast.parse((Path(__file__).parent / "mqbench" / "native.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "MODULES":
            return ast.literal_eval(node.value)
    raise RuntimeError("mqbench/native.py has no MODULES literal")


def headers(sources: list[str]) -> list[str]:
    """The headers a module's sources may include: those beside each source and the shared ones in
    broker/formats (the same set native.stale_source compares), so that a changed header rebuilds."""
    folders = {str(Path(source).parent) for source in sources} | {"broker/formats"}
    return sorted(str(path) for folder in folders for path in Path(folder).glob("*.h"))


# Compiled accelerators (mqbench/native.py). Each is optional: when it does not build, the install
# goes on and the pure-Python module beside it is used. Warnings: CPython's own set (-Wextra without
# the two that every extension's unused `self` and short PyModuleDef initialisers would raise).
ext_modules = [Extension(name, sources, optional=True, include_dirs=["broker/formats"], depends=headers(sources),
                         extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                             "-Wno-missing-field-initializers"])
               for name, sources in native_modules().items()]

setup(packages=packages, package_dir=PACKAGE_DIRS, ext_modules=ext_modules)
