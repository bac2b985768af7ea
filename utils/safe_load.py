"""Weights files read without running any code from them.

A pickle can name any Python callable and have the unpickler call it, and a TorchScript archive
carries code that `torch.jit.load` runs (a scripted `__setstate__`, for one), so neither a full
unpickling nor `torch.jit.load` is used on a file a user names. `load_file` reads:
- files written by `torch.save` (zip or legacy format), through
  `torch.load(weights_only=True)` (memory-mapped for the zip format): tensors, dicts / lists /
  tuples, numbers, strings, None; anything else is refused, never retried as a full pickle;
- TorchScript archives such as OpenAI's `ViT-B-16.pt`, by `read_torchscript`: the archive's
  `data.pkl` is unpickled by `_ArchiveUnpickler`, which knows only the few globals a weights
  archive needs and turns every `__torch__.*` object into an inert `ScriptObject`; the tensors
  come from the archive's `data/<key>` entries, and the parameter / buffer names from the
  `__parameters__` / `__buffers__` lines of the archive's code, read as text. The result is the
  flat state dict `torch.jit.load(path).state_dict()` gives, without running TorchScript.
Anything else raises `WeightsFileError` (a ValueError), one line naming the file.
"""

import collections
import io
import logging
import os
import pickle
import re
import sys
import zipfile

import torch

logger = logging.getLogger(__name__)

ACCEPTED = (
    "accepted: a file saved by torch.save of tensors / state dicts (zip or legacy format), "
    "or OpenAI's TorchScript CLIP archive"
)


class WeightsFileError(ValueError):
    """A weights file that is refused (loading it would run code) or cannot be read."""


class WeightsFileNotFoundError(WeightsFileError, FileNotFoundError):
    """The named weights file does not exist."""


def load_file(path, what="checkpoint"):
    """Read a weights file without running code from it -> the object torch.save stored, or the
    {name: tensor} state dict of a TorchScript archive (tensors on the CPU).

    what: how the caller names the file in errors, e.g. "MODEL.PRETRAIN_PATH".
    Raises WeightsFileNotFoundError (also a FileNotFoundError) for a missing file and
    WeightsFileError for anything refused or unreadable.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsFileNotFoundError(f"{what} {path} does not exist")
    if is_torchscript_archive(path):
        return read_torchscript(path, what)
    try:
        # A zip-format file is memory-mapped: only the tensors the caller touches are read (a
        # backbone out of a 1.2 GB training checkpoint whose optimizer state is never used).
        mmap = zipfile.is_zipfile(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # every failure of a restricted load means the file is not usable
        raise WeightsFileError(_describe(what, path, e)) from e


def is_torchscript_archive(path):
    """A zip holding TorchScript code or constants (torch.load would hand it to torch.jit.load)."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("constants.pkl") or "/code/" in n for n in names)


def _describe(what, path, err):
    """One line saying why torch.load(weights_only=True) failed on `path`."""
    text = str(err)
    found = re.search(r"GLOBAL (\S+?)[ ,]", text) or re.search(r"GLOBAL (\S+)$", text)
    if found:
        return (
            f"{what} {path} was refused: it names the Python object {found[1]}, which only "
            f"a full unpickling creates, and that can run code from the file; {ACCEPTED}"
        )
    if isinstance(err, EOFError) or os.path.getsize(path) == 0:
        reason = "the file is empty or ends early"
    else:
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"
        inner = err.__context__ if err.__suppress_context__ and err.__context__ else err
        detail = " ".join(str(inner).split())[:120] or type(inner).__name__
        reason = (
            f"a zip archive that is truncated or damaged ({detail})"
            if zipped
            else f"not a torch.save file ({detail})"
        )
    return f"{what} {path} cannot be read as weights: {reason}; {ACCEPTED}"


class ScriptObject:
    """An inert stand-in for a TorchScript object of class `type_name`: it only records the
    state the archive stores for it (BUILD calls __setstate__ with it)."""

    type_name = ""
    __slots__ = ("state",)

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"ScriptObject({self.type_name})"


class _StorageType:
    """What `torch.HalfStorage` and the like unpickle to: the element type of a storage."""

    __slots__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = dtype


class _Storage:
    """A storage read from the archive: a flat tensor of its elements."""

    __slots__ = ("flat",)

    def __init__(self, flat):
        self.flat = flat


class _Refused(Exception):
    """A pickle names a global outside the allow-list."""


class _CodeNeeded(Exception):
    """A module whose state is restored by its own scripted __setstate__."""


_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_STORAGES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _ints(value, name):
    if not (isinstance(value, tuple) and all(type(v) is int and v >= 0 for v in value)):
        raise pickle.UnpicklingError(f"tensor {name} {value!r} is not a tuple of integers >= 0")
    return value


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, metadata=None):
    """torch._utils._rebuild_tensor_v2 for archive storages, bounds checked; the tensor's
    requires_grad is dropped (a state dict holds detached tensors)."""
    if not isinstance(storage, _Storage) or type(offset) is not int or offset < 0:
        raise pickle.UnpicklingError("tensor without an archive storage")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride) or hooks or metadata:
        raise pickle.UnpicklingError("tensor with hooks, metadata or mismatched size / stride")
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if 0 not in size and extent > storage.flat.numel():
        raise pickle.UnpicklingError(f"tensor of size {size} reaches past its storage")
    return storage.flat.as_strided(size, stride, offset)


def _identity(value, *type_tag):
    """torch.jit._pickle's restore_type_tag / build_*list: the value as it was pickled."""
    return value


_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{
        ("torch.jit._pickle", n): _identity
        for n in (
            "restore_type_tag",
            "build_intlist",
            "build_doublelist",
            "build_boollist",
            "build_tensorlist",
        )
    },
    **{("torch", n): _StorageType(d) for n, d in _STORAGES.items()},
    **{("torch", n): d for n, d in _DTYPES.items()},
}


class _ArchiveUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript archive's data.pkl: allow-listed globals only, `__torch__.*`
    classes as ScriptObject subclasses, storages from the archive's `data/` entries."""

    def __init__(self, archive, prefix):
        super().__init__(io.BytesIO(archive.read(f"{prefix}/data.pkl")))
        self.archive, self.prefix = archive, prefix
        self.types, self.storages = {}, {}

    def find_class(self, module, name):
        if module == "__torch__" or module.startswith("__torch__."):
            full = f"{module}.{name}"
            if full not in self.types:
                self.types[full] = type(
                    "ScriptObject", (ScriptObject,), {"type_name": full, "__slots__": ()}
                )
            return self.types[full]
        if (module, name) not in _GLOBALS:
            raise _Refused(f"{module}.{name}")
        return _GLOBALS[module, name]

    def persistent_load(self, pid):
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and type(pid[4]) is int
        ):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.80}")
        _, kind, key, _location, numel = pid
        if key not in self.storages:
            entry = f"{self.prefix}/data/{key}"
            itemsize = torch.empty((), dtype=kind.dtype).element_size()
            size = self.archive.getinfo(entry).file_size  # checked before anything is read
            if size != numel * itemsize:
                raise pickle.UnpicklingError(
                    f"storage data/{key} holds {size} bytes, not {numel} x {itemsize}"
                )
            raw = self.archive.read(entry)
            flat = (
                torch.frombuffer(bytearray(raw), dtype=kind.dtype)
                if raw
                else torch.empty(0, dtype=kind.dtype)
            )
            self.storages[key] = _Storage(flat)
        storage = self.storages[key]
        if storage.flat.dtype != kind.dtype:
            raise pickle.UnpicklingError(f"storage data/{key} is read with two element types")
        return storage


def _archive_prefix(names):
    """The archive's top folder: the one holding data.pkl."""
    found = sorted(
        {n.split("/")[0] for n in names if n.count("/") == 1 and n.endswith("/data.pkl")}
    )
    if len(found) != 1:
        raise pickle.UnpicklingError(
            f"{len(found)} top-level data.pkl entries (a TorchScript archive has one)"
        )
    return found[0]


def _class_fields(archive, prefix, type_name, cache):
    """(parameter names, buffer names) of a TorchScript module class, from its
    `class Name(Module):` block and the block's `__parameters__` / `__buffers__` lines in the
    archive's code (read as text, never executed); None for a class that is not a module there
    (torch.jit.load needs every module's code, so a class without code is no module either)."""
    if type_name in cache:
        return cache[type_name]
    module, _, name = type_name.rpartition(".")
    entry = f"{prefix}/code/{module.replace('.', '/')}.py"
    text = archive.read(entry).decode("utf-8") if entry in archive.namelist() else ""
    block = re.search(rf"^class {re.escape(name)}\(Module\):\n((?:[ \t].*\n|\n)*)", text, re.M)
    fields = None
    if block is not None:
        found = [
            re.search(rf"^[ \t]+{field} = \[(.*)\][ \t]*$", block[1], re.M)
            for field in ("__parameters__", "__buffers__")
        ]
        if found[0] is None:
            raise pickle.UnpicklingError(f"module class {type_name} has no __parameters__ line")
        # A class written before the __buffers__ line existed declares no buffers: torch.jit.load
        # then reports none either (its tensor attributes are plain attributes).
        fields = tuple(re.findall(r'"([^"\\]*)"', line[1]) if line else [] for line in found)
    cache[type_name] = fields
    return fields


def _walk(obj, archive, prefix, cache, out, name="", above=()):
    """Module tree -> `out`, in the order of ScriptModule.state_dict(): a module's parameters,
    then its buffers (both in attribute order), then its submodules. above: ids of the modules
    on the path from the root (a pickle can make a module its own child)."""
    if id(obj) in above:
        raise pickle.UnpicklingError(f"module {name} contains itself")
    fields = _class_fields(archive, prefix, obj.type_name, cache)
    if fields is None:
        raise pickle.UnpicklingError(
            f"class {obj.type_name} is not defined as a module in the archive's code"
        )
    params, buffers = fields
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        raise _CodeNeeded(obj.type_name)
    for wanted in (params, buffers):
        for key, value in state.items():
            if key in wanted and value is not None:
                if not isinstance(value, torch.Tensor):
                    raise pickle.UnpicklingError(f"{name}{key} is a {type(value).__name__}")
                out[f"{name}{key}"] = value
    for key, value in state.items():
        if isinstance(value, ScriptObject) and _class_fields(
            archive, prefix, value.type_name, cache
        ):
            _walk(value, archive, prefix, cache, out, f"{name}{key}.", (*above, id(obj)))


def read_torchscript(path, what="checkpoint"):
    """A TorchScript archive -> OrderedDict {name: tensor}: the keys, order, dtypes and values of
    `torch.jit.load(path, map_location="cpu").state_dict()`, read without running TorchScript."""
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive.namelist())
            # Archives older than the byteorder entry are little-endian.
            order = f"{prefix}/byteorder"
            stored = archive.read(order).strip() if order in archive.namelist() else b"little"
            if stored != sys.byteorder.encode():
                raise pickle.UnpicklingError(
                    f"tensors stored {stored[:20].decode(errors='replace')!r}-endian on a "
                    f"{sys.byteorder}-endian machine"
                )
            root = _ArchiveUnpickler(archive, prefix).load()
            if not isinstance(root, ScriptObject):
                raise pickle.UnpicklingError(f"data.pkl holds a {type(root).__name__}")
            out = collections.OrderedDict()
            _walk(root, archive, prefix, {}, out)
    except _Refused as e:
        raise WeightsFileError(
            f"{what} {path} was refused: its data.pkl names the Python object {e}, which only a "
            f"full unpickling creates, and that can run code from the file; {ACCEPTED}"
        ) from None
    except _CodeNeeded as e:
        raise WeightsFileError(
            f"{what} {path} was refused: its TorchScript class {e} restores its state with its "
            f"own __setstate__ code, which is not run; {ACCEPTED}"
        ) from None
    except Exception as e:  # malformed pickle, zip, code text or tensor layout
        detail = " ".join(str(e).split())[:160] or type(e).__name__
        raise WeightsFileError(
            f"{what} {path} cannot be read as a TorchScript weights archive: {detail}; {ACCEPTED}"
        ) from e
    logger.debug("%s: %d tensors read from the TorchScript archive", path, len(out))
    return out
