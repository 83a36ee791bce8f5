"""An emulated CUDA device on a CPU-only machine, for placement tests (issue 17).

:class:`EmulatedCuda` is a ``TorchFunctionMode`` under which ``cuda`` tensors are CPU tensors
tagged as being on ``cuda:0``. The tag belongs to the tensor's *storage* (so views, ``param.data =``
and in-place ops keep it) and is propagated through every torch function: an op's outputs are on
the device of its inputs. What a real GPU refuses, the mode refuses too, with a
:class:`PlacementError` that names the op (and records it in ``violations``):

- an op mixing tensors of both devices (CPU 0-dim tensors may mix, as on CUDA; CPU index tensors
  may index a device tensor; ``copy_`` and ``x[...] = y`` with basic indexing copy across devices);
- ``.numpy()`` or ``np.asarray()`` of a device tensor;
- assigning a gradient of the other device;
- under ``torch.use_deterministic_algorithms(True)``, an op that has no deterministic CUDA kernel
  (``F.interpolate`` bilinear with gradients, ``grid_sample`` with gradients, ``histc``, ...).

``tensor.device`` answers ``cuda:0`` for device tensors, factories with ``device="cuda"`` and
``.to("cuda")``/``.cuda()`` make device tensors, ``.cpu()``/``.to("cpu")`` copy them back
(``transfers`` counts both ways). Random draws on the device come from a generator of their own,
seeded by ``torch.manual_seed`` like CUDA's, so values drawn there differ from the CPU's exactly as
on a GPU; ``device_draws`` lists them. ``torch.cuda.is_available()`` and friends answer as for
one GPU while the emulation is active (see :func:`emulated_cuda`).

Not emulated: kernels, precision and speed (the arithmetic is the CPU's), asynchronous execution,
C++-internal placement checks of ops that never pass through Python.
"""

from __future__ import annotations

import contextlib
import traceback
import types
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

DEVICE = torch.device("cuda", 0)
CPU = torch.device("cpu")
#: Offset between the CPU's seed and the emulated device's (the streams differ, as on a GPU).
DEVICE_SEED_OFFSET = 0x5DEECE66D

_RANDOM = {
    "normal_", "uniform_", "bernoulli_", "random_", "exponential_", "geometric_", "cauchy_",
    "log_normal_", "randn", "rand", "randint", "randperm", "normal", "bernoulli", "multinomial",
    "poisson", "rand_like", "randn_like", "randint_like", "dropout", "dropout_", "alpha_dropout",
    "feature_alpha_dropout", "native_dropout", "rrelu", "rrelu_",
}  # fmt: skip
_SHAPE_ONLY = {"view_as", "expand_as", "reshape_as"}
_LINEAR_MODES = ("linear", "bilinear", "bicubic", "trilinear")


def _needs_grad(args, kwargs) -> bool:
    return any(isinstance(t, torch.Tensor) and t.requires_grad for t in tree_flatten((args, kwargs))[0])


#: Ops that raise on CUDA under ``torch.use_deterministic_algorithms(True)`` (its documentation),
#: each with the condition under which they do (the op is on the device).
_NONDETERMINISTIC_ON_CUDA = {
    "interpolate": lambda a, k: k.get("mode", a[3] if len(a) > 3 else "nearest") in _LINEAR_MODES
    and torch.is_grad_enabled() and _needs_grad(a[:1], {}),
    "grid_sample": lambda a, k: torch.is_grad_enabled() and _needs_grad(a[:1], {}),
    "adaptive_avg_pool2d": lambda a, k: torch.is_grad_enabled() and _needs_grad(a[:1], {}),
    "adaptive_max_pool2d": lambda a, k: torch.is_grad_enabled() and _needs_grad(a[:1], {}),
    "histc": lambda a, k: True,
    "bincount": lambda a, k: k.get("weights", a[1] if len(a) > 1 else None) is not None,
    "put_": lambda a, k: True,
    "median": lambda a, k: len(a) > 1 or "dim" in k,
    "nll_loss": lambda a, k: a[0].dim() == 4,
}
_INDEXING = {"__getitem__", "__setitem__", "index_put_", "index_put"}
_ALLOWED_MIX = {"copy_"}


class PlacementError(RuntimeError):
    """What a real GPU would have raised (or a numpy conversion it would have refused)."""


def _name(func: Any) -> str:
    name = getattr(func, "__name__", None) or repr(func)
    owner = getattr(getattr(func, "__self__", None), "__name__", None)
    return f"{owner}.{name}" if owner and name == "__get__" else name


def _where() -> str:
    """The innermost frame outside torch and this module: the line that made the call."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = frame.filename.replace("\\", "/")
        if "/torch/" not in path and not path.endswith("emulated_device.py"):
            return f"{path}:{frame.lineno} ({frame.name})"
    return "?"


class EmulatedCuda(TorchFunctionMode):
    """See the module docstring. Use :func:`emulated_cuda` to also patch ``torch.cuda``."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self._tags: dict[int, StorageWeakRef] = {}
        self._since_prune = 0
        self.violations: list[str] = []
        self.transfers: Counter[str] = Counter()
        self.device_draws: list[str] = []
        self._rng_state = torch.Generator().manual_seed(seed + DEVICE_SEED_OFFSET).get_state()

    # ------------------------------------------------------------------ tags
    def on_device(self, tensor: torch.Tensor) -> bool:
        """Whether ``tensor`` lives on the emulated device."""
        try:
            key = tensor.untyped_storage()._cdata
        except (RuntimeError, NotImplementedError):
            return False
        ref = self._tags.get(key)
        return ref is not None and not ref.expired()

    def _tag(self, value: Any) -> Any:
        for t in tree_flatten(value)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                self._tags[storage._cdata] = StorageWeakRef(storage)
                self._since_prune += 1
        if self._since_prune > 20000:
            self._tags = {k: r for k, r in self._tags.items() if not r.expired()}
            self._since_prune = 0
        return value

    def manual_seed(self, seed: int) -> None:
        """Seed the device's generator (``torch.manual_seed`` does it on a real GPU)."""
        self._rng_state = torch.Generator().manual_seed(int(seed) + DEVICE_SEED_OFFSET).get_state()

    def _fail(self, message: str) -> None:
        message = f"{message} at {_where()}"
        self.violations.append(message)
        raise PlacementError(message)

    def _device_of(self, t: torch.Tensor) -> torch.device:
        return DEVICE if self.on_device(t) else CPU

    # ------------------------------------------------------------------ the mode
    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: C901
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        owner = getattr(func, "__self__", None)
        if name in ("__get__", "__set__") and owner is not None:
            return self._property(func, owner.__name__, name, args, kwargs)
        if name in ("to", "cuda", "cpu") and args and isinstance(args[0], torch.Tensor):
            return self._transfer(func, name, args, kwargs)
        if name == "pin_memory" and args and isinstance(args[0], torch.Tensor):
            if self.on_device(args[0]):
                self._fail("pin_memory() of a tensor on the GPU (only host tensors can be pinned)")
            return args[0]  # page-locked host memory: nothing to emulate on a CPU-only machine
        if name == "_has_compatible_shallow_copy_type":  # CPU and CUDA tensors are not
            return func(*args, **kwargs) and self.on_device(args[0]) == self.on_device(args[1])
        if name in ("numpy", "__array__") and args and self.on_device(args[0]):
            self._fail(f"{name}() of a tensor on {DEVICE} (a GPU tensor must be moved with .cpu())")
        target = self._factory_device(kwargs)
        tensors = self._operands(name, args, kwargs)
        on_device = [self.on_device(t) for t in tensors]
        if name not in _ALLOWED_MIX:
            big = {d for t, d in zip(tensors, on_device) if t.dim() > 0 or d}
            if len(big) > 1:
                shapes = [(tuple(t.shape), "cuda" if d else "cpu") for t, d in zip(tensors, on_device)]
                self._fail(f"{_name(func)} mixes devices {shapes}")
        device_out = target == "cuda" or (target is None and any(on_device))
        check = _NONDETERMINISTIC_ON_CUDA.get(name)
        deterministic = torch.are_deterministic_algorithms_enabled()
        if check and any(on_device) and deterministic and check(args, kwargs):
            self._fail(f"{_name(func)} has no deterministic CUDA kernel: it raises on a GPU "
                       "under torch.use_deterministic_algorithms(True)")  # fmt: skip
        if name in _RANDOM and device_out:
            self.device_draws.append(f"{_name(func)} at {_where()}")
            out = self._with_device_rng(func, args, kwargs)
        else:
            out = func(*args, **kwargs)
        in_place = name == "__setitem__" or (name.endswith("_") and not name.startswith("__"))
        if device_out and not in_place:  # in-place ops (copy_ included) keep self's device
            self._tag(out)
        return out

    def _operands(self, name: str, args, kwargs) -> list[torch.Tensor]:
        """The tensors an op needs on one device (indices and shape-only arguments excluded)."""
        if name in _SHAPE_ONLY:
            args = args[:1]
        elif name in _INDEXING and args:
            self_t, rest = args[0], args[1:]
            index = rest[0] if rest else None
            value = rest[1:] if name == "__setitem__" else ()
            idx = [t for t in tree_flatten(index)[0] if isinstance(t, torch.Tensor)]
            for t in idx:  # CPU indices may index a device tensor, not the other way round
                if self.on_device(t) and not self.on_device(self_t):
                    self._fail(f"{name} of a cpu tensor with an index on {DEVICE}")
            if name == "__setitem__" and not idx:
                return [self_t]  # basic indexing assigns with copy_: any device
            args = (self_t, *value)
        return [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]

    def _factory_device(self, kwargs: dict) -> str | None:
        """'cuda' / 'cpu' when an op names its output device (rewritten to the CPU), else None."""
        device = kwargs.get("device")
        if device is None:
            return None
        device = torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
        if device.type == "cuda":
            kwargs["device"] = CPU
            return "cuda"
        return device.type

    def _with_device_rng(self, func, args, kwargs):
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng_state)
            out = func(*args, **kwargs)
            self._rng_state = torch.get_rng_state()
        return out

    def _property(self, func, prop: str, kind: str, args, kwargs):
        self_t = args[0]
        if kind == "__get__":
            if prop == "device" and self.on_device(self_t):
                return DEVICE
            if prop == "is_cuda":
                return self.on_device(self_t)
            if prop == "is_cpu":
                return not self.on_device(self_t)
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor) and self.on_device(self_t) and prop in ("grad", "data"):
                self._tag(out)
            return out
        value = args[1] if len(args) > 1 else None
        if prop == "grad" and isinstance(value, torch.Tensor) and (
            self.on_device(value) != self.on_device(self_t)
        ):
            self._fail(f"a gradient on {self._device_of(value)} assigned to a tensor on "
                       f"{self._device_of(self_t)}")  # fmt: skip
        return func(*args, **kwargs)

    def _transfer(self, func, name: str, args, kwargs):
        self_t = args[0]
        source = self.on_device(self_t)
        if name == "cuda":
            dest, dtype, rest = True, None, {}
        elif name == "cpu":
            dest, dtype, rest = False, None, {}
        else:
            dest, dtype, rest = self._parse_to(args[1:], kwargs)
        out = torch.Tensor.to(self_t, dtype=dtype or self_t.dtype, **rest)
        if dest is None:
            dest = source
        if dest != source:
            if out.untyped_storage()._cdata == self_t.untyped_storage()._cdata:
                out = out.clone()
            self.transfers["host to device" if dest else "device to host"] += 1
        if dest and out is not self_t:
            self._tag(out)
        return out

    def _parse_to(self, args, kwargs) -> tuple[bool | None, torch.dtype | None, dict]:
        """(to the device? None = stay, dtype, copy/memory_format) of ``Tensor.to``'s arguments."""
        rest = {k: kwargs[k] for k in ("copy", "memory_format") if k in kwargs}
        others = [a for a in args if isinstance(a, torch.Tensor)] + (
            [kwargs["other"]] if isinstance(kwargs.get("other"), torch.Tensor) else []
        )
        if others:
            return self.on_device(others[0]), others[0].dtype, rest
        clean = {k: v for k, v in kwargs.items() if k in ("device", "dtype")}
        device, dtype, _, memory_format = torch._C._nn._parse_to(*args, **clean)
        if memory_format is not None:
            rest["memory_format"] = memory_format
        if device is None:
            return None, dtype, rest
        return device.type == "cuda", dtype, rest


@contextlib.contextmanager
def emulated_cuda(monkeypatch, seed: int = 0) -> Iterator[EmulatedCuda]:
    """Run the body with an emulated ``cuda:0`` (see :class:`EmulatedCuda`).

    ``torch.cuda`` answers as for one GPU (``is_available``, ``device_count``, ``set_device``,
    ``synchronize``, ...) and ``torch.manual_seed`` seeds the emulated device too.
    """
    mode = EmulatedCuda(seed)
    real_seed = torch.manual_seed

    def manual_seed(value):
        mode.manual_seed(value)
        return real_seed(value)

    cuda = torch.cuda
    for attr, value in {
        "is_available": lambda: True, "device_count": lambda: 1, "current_device": lambda: 0,
        "set_device": lambda device: None, "synchronize": lambda device=None: None,
        "empty_cache": lambda: None, "get_device_name": lambda device=None: "emulated cuda:0",
        "is_bf16_supported": lambda *a, **k: True, "get_device_capability": lambda d=None: (9, 0),
        "manual_seed": mode.manual_seed, "manual_seed_all": mode.manual_seed,
        "max_memory_allocated": lambda device=None: 0, "memory_allocated": lambda device=None: 0,
        "reset_peak_memory_stats": lambda device=None: None,
        "mem_get_info": lambda device=None: (16 * 2**30, 80 * 2**30),
    }.items():  # fmt: skip
        monkeypatch.setattr(cuda, attr, value)
    stream = types.SimpleNamespace(is_capturing=lambda: False, synchronize=lambda: None)
    monkeypatch.setattr(cuda, "current_stream", lambda device=None: stream)
    monkeypatch.setattr(cuda, "is_current_stream_capturing", lambda: False)
    monkeypatch.setattr(torch.accelerator, "current_stream", lambda device=None: stream)
    monkeypatch.setattr(torch, "manual_seed", manual_seed)
    monkeypatch.setattr(torch.random, "manual_seed", manual_seed)
    with mode:
        yield mode
