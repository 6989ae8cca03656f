"""Loading pickle and joblib model files without running the code a pickle can carry.

A pickle names the functions it calls while it is loaded (``GLOBAL`` opcodes); ``__reduce__``
can make that ``os.system`` or ``eval``. So model files are read with an unpickler whose
``find_class`` admits only what the supported runtimes' models are made of:

* scikit-learn classes (estimators, pipelines, preprocessing, trees, ...) and its Cython
  reconstructors (``newObj``, ``__pyx_unpickle_*``), except its test helpers;
* numpy arrays, dtypes, scalars, ufuncs and random generators; scipy.sparse matrices;
* xgboost / lightgbm scikit-learn wrappers and their boosters (they restore from model bytes);
* a few builtins: containers, numbers, ``slice``, ``copyreg._reconstructor`` and the like.

Anything else (a function of ``os``, ``builtins.eval``, pandas, your own classes) stops the
load with :class:`UnsafePickle`, whose message names the global and the two ways to opt in:
annotation ``serving.kfbox.io/allow-unsafe-pickle: "true"`` on the InferenceService, or
``KFBOX_ALLOW_UNSAFE_PICKLE=1`` for the whole server. This blocks code execution through
globals; it does not make a hostile file harmless in every other way (a crafted array can
still crash a Cython routine), which is why the opt-in exists and the README calls model
files code.

joblib files are read with joblib's own ``NumpyUnpickler`` (it restores the arrays it stores
outside the pickle stream), restricted the same way; joblib >= 1.5 sends the nested pickles
of object arrays through the outer ``find_class``, so those are restricted too.

Example::

    model = load_model_file(Path("model.joblib"))            # refuses os.system & co.
    model = load_model_file(Path("model.pkl"), allow_unsafe=True)
"""

from __future__ import annotations

import _compat_pickle
import importlib
import pickle
from pathlib import Path
from typing import IO, Any

OPT_IN_ANNOTATION = "serving.kfbox.io/allow-unsafe-pickle"
OPT_IN_ENV = "KFBOX_ALLOW_UNSAFE_PICKLE"

SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    *(("builtins", name) for name in ("bytearray", "bytes", "complex", "dict", "frozenset", "list", "object",
                                      "set", "slice", "str", "tuple", "int", "float", "bool", "range")),
    ("copyreg", "_reconstructor"), ("_codecs", "encode"),
    ("collections", "OrderedDict"), ("collections", "defaultdict"), ("collections", "deque"),
    ("collections", "Counter"),
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"), ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),  # not NDArrayWrapper: it reads a file named in the pickle
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy.random._pickle", "__bit_generator_ctor"), ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"),
})
"""Exact (module, name) pairs that are always allowed."""

CLASS_PACKAGES = ("sklearn", "numpy", "scipy.sparse", "xgboost", "lightgbm")
"""Packages whose classes may be rebuilt (subject to :func:`_allowed_class`)."""

EXCLUDED_MODULES = ("sklearn.utils._testing", "sklearn.utils._mocking", "sklearn.datasets", "sklearn.externals",
                    "sklearn.tests", "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.lib.npyio",
                    "numpy.ctypeslib", "numpy.lib._npyio_impl")


class UnsafePickle(pickle.UnpicklingError):
    """A model file names a global outside the allowlist; loading it could run arbitrary code."""


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _allowed_class(module: str, name: str, obj: Any) -> bool:
    import numpy as np

    home = getattr(obj, "__module__", None) or ""
    if _under(module, EXCLUDED_MODULES) or _under(home, EXCLUDED_MODULES):
        return False
    if _under(module, ("numpy",)):
        if isinstance(obj, np.ufunc):
            return True  # pure element-wise math, e.g. FunctionTransformer(func=np.log1p)
        if isinstance(obj, type):
            return issubclass(obj, (np.generic, np.dtype)) or _under(home, ("numpy.random",))
    elif isinstance(obj, type):
        return _under(home, CLASS_PACKAGES)  # re-exports of foreign classes (say subprocess.Popen) stay out
    # Cython's reconstructors: they only call __new__/__setstate__ of a class that was itself checked here
    return _under(module, ("sklearn", "numpy.random")) and (name == "newObj" or name.startswith("__pyx_unpickle_"))


def check_global(module: str, name: str) -> None:
    """Raise :class:`UnsafePickle` unless ``module.name`` is something a model is made of."""
    # Python 2 names (protocols 0-2), mapped as pickle.Unpickler.find_class maps them
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    if (module, name) in SAFE_GLOBALS:
        return
    if "." not in name and _under(module, CLASS_PACKAGES) and not _under(module, EXCLUDED_MODULES):
        try:
            obj = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            obj = None
        if obj is not None and _allowed_class(module, name, obj):
            return
    raise UnsafePickle(refusal(f"{module}.{name}"))


def refusal(what: str, source: str = "this model file") -> str:
    return (f"Refusing to load {source}: it calls {what}, which is not a model type kfbox trusts "
            "(scikit-learn, numpy, scipy.sparse, xgboost, lightgbm). A pickle can run any code when it is "
            "loaded. If you trust this file, opt in with the annotation "
            f'{OPT_IN_ANNOTATION}: "true" on the InferenceService, or set {OPT_IN_ENV}=1 for the whole server.')


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that admits only the allowlisted globals."""

    def find_class(self, module: str, name: str) -> Any:
        check_global(module, name)
        return super().find_class(module, name)


def _restricted_joblib(handle: IO[bytes], filename: str) -> Any:
    import joblib
    from joblib import numpy_pickle

    major, minor = (int(part) for part in joblib.__version__.split(".")[:2])
    if (major, minor) < (1, 5):
        raise UnsafePickle(f"joblib {joblib.__version__} reads object arrays with an unrestricted unpickler; "
                           "upgrade to joblib >= 1.5 (pip install -U joblib) or opt in to unsafe pickles.")

    class RestrictedNumpyUnpickler(numpy_pickle.NumpyUnpickler):  # type: ignore[misc]  # joblib ships no types
        def find_class(self, module: str, name: str) -> Any:
            check_global(module, name)
            return super().find_class(module, name)

    with numpy_pickle._validate_fileobject_and_memmap(handle, filename) as (fobj, _):
        if isinstance(fobj, str):  # joblib < 0.10 format: loaded by a compatibility path we cannot restrict
            raise UnsafePickle(f"{filename} was written by joblib < 0.10, whose format cannot be loaded safely; "
                               "save the model again with a current joblib.")
        return RestrictedNumpyUnpickler(filename, fobj, ensure_native_byte_order=True).load()


def load_model_file(path: Path, handle: IO[bytes] | None = None, allow_unsafe: bool = False) -> Any:
    """The object in a ``.joblib``/``.pkl``/``.pickle`` file, restricted unless ``allow_unsafe``.

    ``handle`` is the already-opened file (so the file checked is the file read); ``path`` names it.
    """
    own = handle is None
    stream: IO[bytes] = open(path, "rb") if handle is None else handle  # noqa: SIM115 - closed below
    try:
        if path.suffix == ".joblib":
            if allow_unsafe:
                import joblib

                return joblib.load(stream)
            return _restricted_joblib(stream, str(path))
        if allow_unsafe:
            return pickle.load(stream)  # the user opted in: this runs whatever the file says
        return RestrictedUnpickler(stream).load()
    except UnsafePickle as exc:
        raise UnsafePickle(str(exc).replace("this model file", str(path), 1)) from None
    finally:
        if own:
            stream.close()
