"""Byte-compile the image's libraries: all of them, or only what serving imports.

Written into a build context by mlcycle and run in the `libs` stage of its Dockerfile
with the image's Python: `precompile.py --all`, or `precompile.py MODULE...` to import
those modules and compile exactly the library files that importing them loaded. The
rest keeps its source only (a model served by ONNX Runtime never loads most of NumPy,
SQLAlchemy or Pygments: about 20 MB of bytecode that the image leaves out).

The bytecode is checked against a hash of its source, not the source's modification
time, which copying the environment between build stages need not keep.
"""

import compileall
import importlib
import py_compile
import sys
import sysconfig

MODE = py_compile.PycInvalidationMode.CHECKED_HASH


def main(argv: list[str]) -> int:
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    if argv == ["--all"]:
        ok = all(
            compileall.compile_dir(root, quiet=1, invalidation_mode=MODE, workers=0)
            for root in roots
        )
        return 0 if ok else 1
    for name in argv:
        importlib.import_module(name)
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py") and path.startswith(tuple(roots)):
            py_compile.compile(path, invalidation_mode=MODE, doraise=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
