"""Read pickles without running any code they carry.

A pickle is a small program: every global it names is imported and may be
called with arguments of the file's choosing (``os.system``, ``eval``, ...), and
StyleGAN2-ADA pickles go further and ``exec`` the Python source embedded in
them.  :class:`SafeUnpickler` resolves globals only through an explicit
allow-list: each allowed ``(module, name)`` maps to a *reconstructor* we wrote
or a numpy/stdlib type that only builds data.  Any other global is refused with
a one-line :class:`AssetError` naming the file and the global, before anything
is called.

Default allow-list (:data:`DATA_GLOBALS`):

* containers and scalars: ``collections.OrderedDict``, ``set``, ``frozenset``,
  ``complex``, ``slice``, ``bytearray``; Python 2 and 3 spellings;
* numpy arrays, dtypes and scalars (an object array can only hold what this
  list allows, since its items are unpickled by the same unpickler);
* ``chumpy.ch.Ch`` (FLAME and SMPL model files) -> numpy array;
* ``scipy.sparse`` CSC/CSR/COO matrices (FLAME ``J_regressor``) -> dense numpy;
* ``argparse.Namespace`` (training options) -> dict;
* ``dnnlib.util.EasyDict`` -> dict, and StyleGAN2-ADA ``torch_utils.persistence``
  objects -> :class:`PersistentObject`, their saved class name and state
  (init kwargs, parameters, buffers, submodules); the embedded source is kept
  as a string and never executed.

Tensors need torch, so their reconstructors live in
``pvp_runtime.loaders.torch_files`` and are passed in as ``extra``.
This module imports only numpy and the standard library (Blender ships it).
"""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..contract.errors import AssetError

Globals = Mapping[tuple[str, str], Any]


# --------------------------------------------------------------------------- placeholders

@dataclass
class PersistentObject:
    """A StyleGAN2-ADA ``persistent_class`` instance, as data.

    ``state`` is the object's ``__dict__`` as pickled: for a ``torch.nn.Module``
    that holds ``_parameters``, ``_buffers``, ``_modules`` and ``_init_kwargs``.
    """

    class_name: str
    state: dict = field(repr=False)
    module_src: str = field(default="", repr=False)  # kept for inspection, never executed

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args", ()))

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs", {}))

    def child(self, name: str) -> "PersistentObject | None":
        return (self.state.get("_modules") or {}).get(name)

    def tensors(self, prefix: str = "") -> dict[str, Any]:
        """Parameters and buffers of this module and its submodules, named like ``state_dict``."""
        out = {}
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is not None:
                    out[prefix + name] = value
        for name, module in (self.state.get("_modules") or {}).items():
            if isinstance(module, PersistentObject):
                out.update(module.tensors(f"{prefix}{name}."))
        return out


class _AttrDict(dict):
    """Stands in for ``dnnlib.EasyDict`` (a dict subclass; needs a ``__dict__`` for BUILD)."""


class _Stateful:
    """Base of placeholders that receive their contents through pickle's BUILD."""

    def __setstate__(self, state):
        self._state = state


class _ChumpyArray(_Stateful):
    """``chumpy.ch.Ch``: its data is the array in ``state['x']``."""


class _Namespace(_Stateful):
    """``argparse.Namespace`` (training options in rosinality checkpoints) -> dict."""


class _SparseMatrix(_Stateful):
    FORMAT = ""


class _CscMatrix(_SparseMatrix):
    FORMAT = "csc"


class _CsrMatrix(_SparseMatrix):
    FORMAT = "csr"


class _CooMatrix(_SparseMatrix):
    FORMAT = "coo"


_PLACEHOLDER_CLASSES = (_ChumpyArray, _Namespace, _CscMatrix, _CsrMatrix, _CooMatrix)


# --------------------------------------------------------------------------- reconstructors

def _copyreg_reconstructor(cls, base, state):
    """Protocol 0/1 object creation (Python 2 pickles), for our placeholders only."""
    if cls not in _PLACEHOLDER_CLASSES or base is not object or state is not None:
        raise pickle.UnpicklingError(f"copyreg._reconstructor of {getattr(cls, '__name__', cls)!r}")
    return object.__new__(cls)


def _codecs_encode(text, encoding="utf-8"):
    # Python 3 writes bytes in protocol 2 as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode with unexpected arguments")
    return text.encode("latin1")


_NUMPY_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_NUMPY_SCALAR = np.float32(0).__reduce__()[0]
_NUMPY_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]


def _numpy_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"numpy array of unexpected type {subtype!r}")
    return _NUMPY_RECONSTRUCT(subtype, shape, dtype)


def _reconstruct_persistent_obj(meta):
    """``torch_utils.persistence._reconstruct_persistent_obj`` without ``exec``."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or "class_name" not in meta:
        raise pickle.UnpicklingError("malformed StyleGAN2-ADA persistent object")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise pickle.UnpicklingError("StyleGAN2-ADA persistent object without a state dict")
    return PersistentObject(str(meta["class_name"]), state, str(meta.get("module_src", "")))


def _spellings(modules: tuple[str, ...], names: Mapping[str, Any]) -> dict:
    return {(module, name): value for module in modules for name, value in names.items()}


_BUILTIN_TYPES = {"set": set, "frozenset": frozenset, "complex": complex, "slice": slice,
                  "bytearray": bytearray, "object": object}

DATA_GLOBALS: dict[tuple[str, str], Any] = {
    **_spellings(("builtins", "__builtin__"), _BUILTIN_TYPES),
    **_spellings(("collections",), {"OrderedDict": OrderedDict}),
    **_spellings(("copyreg", "copy_reg"), {"_reconstructor": _copyreg_reconstructor}),
    **_spellings(("_codecs",), {"encode": _codecs_encode}),
    **_spellings(("numpy.core.multiarray", "numpy._core.multiarray"),
                 {"_reconstruct": _numpy_reconstruct, "scalar": _NUMPY_SCALAR}),
    **_spellings(("numpy.core.numeric", "numpy._core.numeric"), {"_frombuffer": _NUMPY_FROMBUFFER}),
    **_spellings(("numpy",), {"ndarray": np.ndarray, "dtype": np.dtype}),
    **_spellings(("chumpy.ch", "chumpy"), {"Ch": _ChumpyArray}),
    **_spellings(("scipy.sparse.csc", "scipy.sparse._csc"), {"csc_matrix": _CscMatrix, "csc_array": _CscMatrix}),
    **_spellings(("scipy.sparse.csr", "scipy.sparse._csr"), {"csr_matrix": _CsrMatrix, "csr_array": _CsrMatrix}),
    **_spellings(("scipy.sparse.coo", "scipy.sparse._coo"), {"coo_matrix": _CooMatrix, "coo_array": _CooMatrix}),
    **_spellings(("dnnlib.util", "dnnlib"), {"EasyDict": _AttrDict}),
    ("argparse", "Namespace"): _Namespace,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
}


# --------------------------------------------------------------------------- unpickler

class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals come only from an allow-list.

    ``persistent_load`` handles persistent ids (torch's storage references);
    without one, a persistent id is refused like any unknown global.
    Python 2 pickles are read with ``encoding='latin1'`` (numpy array data
    was written as ``str``), which is why that is the default.
    """

    def __init__(self, file, source: str, allowed: Globals,
                 persistent_load: Callable[[Any], Any] | None = None, encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self._source = source
        self._allowed = allowed
        self._persistent_load = persistent_load

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise AssetError(f"{self._source}: refused to load {module}.{name}: it is not on the allow-list "
                             f"of data types (pickles can run code, so PVP Avatar reads known data only)") from None

    def persistent_load(self, pid):
        if self._persistent_load is None:
            raise AssetError(f"{self._source}: unexpected persistent reference {pid!r} in the pickle")
        return self._persistent_load(pid)


def unpickle(stream, source: str, extra: Globals | None = None,
             persistent_load: Callable[[Any], Any] | None = None) -> Any:
    """Unpickle one object from ``stream`` through the allow-list, then convert placeholders."""
    allowed = {**DATA_GLOBALS, **(extra or {})}
    try:
        obj = SafeUnpickler(stream, source, allowed, persistent_load).load()
    except AssetError:
        raise
    except EOFError:
        raise AssetError(f"{source}: truncated pickle (the file ends early)") from None
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            MemoryError, OverflowError, UnicodeDecodeError, RecursionError) as exc:
        raise AssetError(f"{source}: not a readable pickle, or a corrupt one ({type(exc).__name__}: "
                         f"{_first_line(exc)})") from None
    return to_plain(obj, source)


def load_pickle(path: str | os.PathLike, extra: Globals | None = None,
                persistent_load: Callable[[Any], Any] | None = None) -> Any:
    """Read a pickle file through the allow-list; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"{path}: file not found")
    with path.open("rb") as handle:
        return unpickle(handle, str(path), extra, persistent_load)


def unpickle_bytes(data: bytes, source: str, extra: Globals | None = None,
                   persistent_load: Callable[[Any], Any] | None = None) -> Any:
    return unpickle(io.BytesIO(data), source, extra, persistent_load)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "no details"


# --------------------------------------------------------------------------- placeholders -> data

def to_plain(obj: Any, source: str) -> Any:
    """Replace placeholders by plain data: chumpy and sparse -> numpy, EasyDict -> dict.

    Walks dicts, lists, tuples and persistent-object states; shared objects are
    converted once (the memo keeps pickles with shared references linear).
    """
    memo: dict[int, Any] = {}

    def convert(value):
        key = id(value)
        if key in memo:
            return memo[key]
        if isinstance(value, _ChumpyArray):
            result = _chumpy_to_numpy(value, source, convert)
        elif isinstance(value, _SparseMatrix):
            result = _sparse_to_dense(value, source)
        elif isinstance(value, _Namespace):
            result = {k: convert(v) for k, v in (getattr(value, "_state", None) or {}).items()}
        elif isinstance(value, _AttrDict):
            result = {k: convert(v) for k, v in value.items()}
        elif isinstance(value, OrderedDict):
            result = OrderedDict((k, convert(v)) for k, v in value.items())
        elif isinstance(value, dict):
            result = {k: convert(v) for k, v in value.items()}
        elif isinstance(value, list):
            result = [convert(v) for v in value]
        elif isinstance(value, tuple):
            result = tuple(convert(v) for v in value)
        elif isinstance(value, PersistentObject):
            memo[key] = value  # before recursing: a state may refer back to its owner
            value.state = convert(value.state)
            return value
        elif isinstance(value, _Stateful) or type(value) is object:
            raise AssetError(f"{source}: the pickle holds an object with no data ({type(value).__name__})")
        else:
            result = value
        memo[key] = result
        return result

    return convert(obj)


def _chumpy_to_numpy(value: _ChumpyArray, source: str, convert) -> np.ndarray:
    state = getattr(value, "_state", None)
    if not isinstance(state, dict) or "x" not in state:
        raise AssetError(f"{source}: a chumpy object holds no array data ('x'); only plain chumpy arrays "
                         f"(chumpy.ch.Ch) are supported, not computed chumpy expressions")
    data = convert(state["x"])
    try:
        return np.asarray(data)
    except (TypeError, ValueError):
        raise AssetError(f"{source}: a chumpy array holds {type(data).__name__}, not numbers") from None


def _sparse_to_dense(value: _SparseMatrix, source: str) -> np.ndarray:
    state = getattr(value, "_state", None)
    try:
        shape = tuple(int(n) for n in state["_shape"])
        data = np.asarray(state["data"])
        dense = np.zeros(shape, dtype=data.dtype if data.dtype.kind in "fiub" else np.float64)
        if value.FORMAT == "coo":
            np.add.at(dense, (np.asarray(state["row"]), np.asarray(state["col"])), data)
            return dense
        indices, indptr = np.asarray(state["indices"]), np.asarray(state["indptr"])
        major = shape[1] if value.FORMAT == "csc" else shape[0]
        if len(indptr) != major + 1 or indptr[-1] != len(data) or len(indices) != len(data):
            raise ValueError("inconsistent index arrays")
        owner = np.repeat(np.arange(major), np.diff(indptr))  # the column (csc) or row (csr) of each entry
        rows, cols = (indices, owner) if value.FORMAT == "csc" else (owner, indices)
        np.add.at(dense, (rows, cols), data)  # add: sparse matrices may hold duplicate entries
        return dense
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise AssetError(f"{source}: corrupt scipy.sparse {value.FORMAT} matrix in the pickle "
                         f"({_first_line(exc)})") from None
