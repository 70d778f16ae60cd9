"""Build small third-party files in their exact real layouts, without the third-party code.

* :func:`nvlabs_pickle` writes what ``stylegan2-ada-pytorch``'s training loop
  writes: ``pickle.dump({G, D, G_ema, training_set_kwargs, augment_pipe})`` whose
  networks reduce to ``torch_utils.persistence._reconstruct_persistent_obj(meta)``
  with ``meta = {type, version, module_src, class_name, state}``, ``state`` being
  the module's ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``,
  ``_init_kwargs``...), init kwargs as ``dnnlib.util.EasyDict``.
* :func:`rosinality_state_dict` lays a generator out as rosinality's ``g_ema``.
* :func:`py2_pickle` writes a Python 2 protocol-2 pickle (``str`` data, ``copy_reg``).
* :func:`tiny_flame_arrays` is a 12-vertex model with every FLAME key, shape and dtype;
  :func:`face_flame_arrays` the same with a face's layout (level, mirror-image eyes).
* :func:`deca_e_flame_state` / :func:`deca_checkpoint`: DECA's ``deca_model.tar``,
  ``torch.save({'E_flame', 'E_detail', 'D_detail'})``, ``E_flame`` at its full size
  (ResNet-50 trunk in torchvision names + the 2048-1024-236 MLP), names spelt out
  here from torchvision's rules rather than taken from our module.
* :func:`torch_file_claiming`: a ``torch.save`` file (zip or legacy) whose one
  storage claims any element count, followed by any storage bytes (crafted files).

The globals those pickles name (``torch_utils.persistence``, ``dnnlib.util``,
``chumpy.ch``) are stand-in modules registered only while pickling.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict

import numpy as np
import torch

from pvp_runtime.formats.flame import NUM_SHAPE
from pvp_runtime.model.stylegan2 import Generator
from pvp_runtime.model.stylegan2 import lowpass_filter_2d as _lowpass_filter


@contextlib.contextmanager
def one_torch_thread():
    """Tiny networks run faster on one thread, and far faster on a shared, busy machine
    (two OpenMP threads spin-wait on each other); restores the setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def stand_in_modules(**modules):
    """Register modules (``name -> {attr: object}``) so pickle can name their objects, then remove them."""
    saved = {}
    try:
        for dotted, attrs in modules.items():
            name = dotted.replace("__", ".")
            parts = name.split(".")
            for parent in (".".join(parts[:i]) for i in range(1, len(parts))):
                if parent not in saved:  # importing a.b imports a first
                    saved[parent] = sys.modules.get(parent)
                    sys.modules[parent] = types.ModuleType(parent)
            saved[name] = sys.modules.get(name)
            module = types.ModuleType(name)
            for attr, value in attrs.items():
                value.__module__ = name
                value.__qualname__ = attr
                setattr(module, attr, value)
            sys.modules[name] = module
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


# --------------------------------------------------------------------------- NVlabs persistence

def _reconstruct_persistent_obj(meta):  # named torch_utils.persistence._reconstruct_persistent_obj in pickles
    raise AssertionError("the stand-in is never called")


class EasyDict(dict):  # named dnnlib.util.EasyDict in pickles
    pass


class Persistent:
    """Pickles exactly like a ``persistent_class`` instance."""

    def __init__(self, class_name, state, module_src="# the network's module source\n"):
        self.class_name, self.state, self.module_src = class_name, state, module_src

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name,
                    state=self.state)
        return (_reconstruct_persistent_obj, (meta,))


def module_state(parameters=(), buffers=(), modules=(), init_kwargs=None, **attributes):
    """A ``torch.nn.Module.__dict__`` as pickled (hooks empty, as after ``copy.deepcopy().eval()``)."""
    state = {"training": False,
             "_parameters": OrderedDict((k, torch.nn.Parameter(v, requires_grad=False)) for k, v in parameters),
             "_buffers": OrderedDict(buffers), "_non_persistent_buffers_set": set(),
             "_backward_hooks": OrderedDict(), "_forward_hooks": OrderedDict(), "_forward_pre_hooks": OrderedDict(),
             "_state_dict_hooks": OrderedDict(), "_load_state_dict_pre_hooks": OrderedDict(),
             "_modules": OrderedDict(modules), "_init_args": (), "_init_kwargs": EasyDict(init_kwargs or {})}
    state.update(attributes)
    return state


BUFFERS = ("noise_const", "w_avg")


def _class_name(path: str) -> str:
    last = path.rsplit(".", 1)[-1]
    if path == "":
        return "Generator"
    if last in ("mapping", "synthesis"):
        return {"mapping": "MappingNetwork", "synthesis": "SynthesisNetwork"}[last]
    if last.startswith("fc") or last == "affine":
        return "FullyConnectedLayer"
    if last.startswith("b") and last[1:].isdigit():
        return "SynthesisBlock"
    return "ToRGBLayer" if last == "torgb" else "SynthesisLayer"


def nvlabs_network(generator: Generator, init_kwargs: dict, module_src: str = "# source\n",
                   filter_value: torch.Tensor | None = None) -> Persistent:
    """Our generator's tensors arranged as NVlabs' module tree (with its resample_filter buffers)."""
    state = generator.state_dict()
    lowpass = _lowpass_filter() if filter_value is None else filter_value

    def build(path):
        prefix = f"{path}." if path else ""
        own = {name[len(prefix):]: t.clone() for name, t in state.items()
               if name.startswith(prefix) and "." not in name[len(prefix):]}
        children = sorted({name[len(prefix):].split(".")[0] for name in state
                           if name.startswith(prefix) and "." in name[len(prefix):]})
        params = [(k, v) for k, v in own.items() if k not in BUFFERS]
        buffers = [(k, v) for k, v in own.items() if k in BUFFERS]
        kind = _class_name(path)
        if kind in ("SynthesisBlock", "SynthesisLayer"):
            buffers.append(("resample_filter", lowpass.clone()))
        modules = [(child, build(prefix + child)) for child in children]
        return Persistent(kind, module_state(params, buffers, modules,
                                             init_kwargs if path == "" else {}), module_src)

    return build("")


def nvlabs_init_kwargs(generator: Generator, **synthesis_overrides) -> dict:
    c = generator.config
    synthesis = EasyDict(channel_base=c.channel_base, channel_max=c.channel_max, num_fp16_res=4,
                         conv_clamp=c.conv_clamp, **synthesis_overrides)
    return dict(z_dim=c.z_dim, c_dim=0, w_dim=c.w_dim, img_resolution=c.resolution, img_channels=c.img_channels,
                mapping_kwargs=EasyDict(num_layers=c.mapping_layers), synthesis_kwargs=synthesis)


def nvlabs_pickle(path, generator: Generator, init_kwargs: dict | None = None, module_src: str = "# source\n",
                  filter_value=None, drop=()) -> None:
    init_kwargs = nvlabs_init_kwargs(generator) if init_kwargs is None else init_kwargs
    network = nvlabs_network(generator, init_kwargs, module_src, filter_value)
    snapshot = {"training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "path": "ffhq.zip"},
                "G": network, "D": Persistent("Discriminator", module_state(), module_src),
                "G_ema": network, "augment_pipe": None}
    for key in drop:
        snapshot.pop(key)
    with stand_in_modules(torch_utils__persistence={"_reconstruct_persistent_obj": _reconstruct_persistent_obj},
                          dnnlib__util={"EasyDict": EasyDict}):
        with open(path, "wb") as handle:
            pickle.dump(snapshot, handle)


# --------------------------------------------------------------------------- rosinality layout

def rosinality_state_dict(generator: Generator) -> OrderedDict:
    """Our generator in rosinality's ``g_ema`` naming and layout (see loaders/stylegan2_rosinality.py)."""
    s = {k: v.clone() for k, v in generator.state_dict().items()}
    c = generator.config
    out = OrderedDict()
    for i in range(c.mapping_layers):
        out[f"style.{i + 1}.weight"] = s[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = s[f"mapping.fc{i}.bias"]
    out["input.input"] = s["synthesis.b4.const"][None]

    def conv(theirs, ours, noise_index, blur):
        out[f"{theirs}.conv.weight"] = s[f"{ours}.weight"][None]
        if blur:
            out[f"{theirs}.conv.blur.kernel"] = _lowpass_filter() * 4
        out[f"{theirs}.conv.modulation.weight"] = s[f"{ours}.affine.weight"]
        out[f"{theirs}.conv.modulation.bias"] = s[f"{ours}.affine.bias"]
        out[f"{theirs}.noise.weight"] = s[f"{ours}.noise_strength"].reshape(1)
        out[f"{theirs}.activate.bias"] = s[f"{ours}.bias"]
        noises[f"noises.noise_{noise_index}"] = s[f"{ours}.noise_const"][None, None]

    def torgb(theirs, ours, upsample):
        out[f"{theirs}.bias"] = s[f"{ours}.bias"].reshape(1, -1, 1, 1)
        if upsample:
            out[f"{theirs}.upsample.kernel"] = _lowpass_filter() * 4
        out[f"{theirs}.conv.weight"] = s[f"{ours}.weight"][None]
        out[f"{theirs}.conv.modulation.weight"] = s[f"{ours}.affine.weight"]
        out[f"{theirs}.conv.modulation.bias"] = s[f"{ours}.affine.bias"]

    noises = OrderedDict()
    conv("conv1", "synthesis.b4.conv1", 0, blur=False)
    torgb("to_rgb1", "synthesis.b4.torgb", upsample=False)
    for k, res in enumerate(c.block_resolutions[1:]):
        conv(f"convs.{2 * k}", f"synthesis.b{res}.conv0", 2 * k + 1, blur=True)
        conv(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", 2 * k + 2, blur=False)
    for k, res in enumerate(c.block_resolutions[1:]):
        torgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb", upsample=True)
    out.update(noises)
    return out


# --------------------------------------------------------------------------- Python 2 pickles

class Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it: bytes are ``str`` (BINSTRING), modules ``copy_reg``/``__builtin__``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2, fix_imports=True).dump(obj)
    return buffer.getvalue()


# --------------------------------------------------------------------------- FLAME

V = 12
JOINT_OF_VERTEX = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def tiny_flame_arrays(seed=0):
    """FLAME-shaped arrays for 12 vertices: every key, shape and dtype as in generic_model.pkl."""
    rng = np.random.default_rng(seed)
    weights = np.zeros((V, 5))
    weights[np.arange(V), JOINT_OF_VERTEX] = 1.0
    weights[3] = [0.5, 0.5, 0, 0, 0]  # one vertex blended between root and neck
    j_regressor = np.zeros((5, V))
    for joint in range(5):
        members = [v for v, j in enumerate(JOINT_OF_VERTEX) if j == joint]
        j_regressor[joint, members] = 1.0 / len(members)
    return {
        "v_template": rng.normal(size=(V, 3)),
        "shapedirs": rng.normal(scale=0.01, size=(V, 3, NUM_SHAPE + 100)),
        "posedirs": rng.normal(scale=0.01, size=(V, 3, 36)),
        "J_regressor": j_regressor,
        "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "f": np.array([[0, 1, 2], [4, 5, 6], [8, 9, 10]], dtype=np.uint32),
        "J": j_regressor @ rng.normal(size=(V, 3)),
        "bs_style": "lbs", "bs_type": "lrotmin",
    }


def face_flame_arrays(seed=0):
    """:func:`tiny_flame_arrays` laid out like a face in FLAME axes (metres, +x subject's left, +y up,
    +z out of the face): root under the skull, neck below it, the jaw in front, and the eye vertices
    (joints 3 and 4) mirror images at one height, so the rest head's eye line is horizontal."""
    arrays = tiny_flame_arrays(seed)
    arrays["v_template"] = np.array([
        [0.00, 0.00, 0.00], [0.02, 0.01, -0.01], [-0.02, 0.01, -0.01], [0.00, -0.02, 0.00],   # root
        [0.00, -0.06, -0.01], [0.00, -0.05, 0.01],                                            # neck
        [0.00, -0.06, 0.07], [0.01, -0.07, 0.08],                                             # jaw
        [0.025, 0.035, 0.085], [0.045, 0.035, 0.085],                                         # left eye (+x)
        [-0.025, 0.035, 0.085], [-0.045, 0.035, 0.085],                                       # right eye
    ])
    arrays["posedirs"] = np.zeros_like(arrays["posedirs"])  # random correctives would tilt the eyes apart
    return arrays


DECA_BLOCKS = (3, 4, 6, 3)  # ResNet-50


def deca_e_flame_state(seed=0, code_size=236) -> OrderedDict:
    """DECA's ``E_flame`` state dict: every name and shape of ``ResnetEncoder(outsize=236)``, random values.

    Weights are He-scaled and the residual branches damped, so activations stay
    in a sensible range through 16 blocks (a swapped tensor still changes the code).
    """
    gen = torch.Generator().manual_seed(seed)
    state = OrderedDict()

    def conv(name, out_ch, in_ch, k):
        state[f"{name}.weight"] = torch.randn(out_ch, in_ch, k, k, generator=gen) * (2.0 / (in_ch * k * k)) ** 0.5

    def bn(name, channels, damp=False):
        scale = 0.3 if damp else 1.0
        state[f"{name}.weight"] = (torch.rand(channels, generator=gen) * 0.5 + 0.75) * scale
        state[f"{name}.bias"] = torch.randn(channels, generator=gen) * 0.1
        state[f"{name}.running_mean"] = torch.randn(channels, generator=gen) * 0.1
        state[f"{name}.running_var"] = torch.rand(channels, generator=gen) * 0.5 + 0.75
        state[f"{name}.num_batches_tracked"] = torch.tensor(1000)

    conv("encoder.conv1", 64, 3, 7)
    bn("encoder.bn1", 64)
    channels = 64
    for stage, (blocks, width) in enumerate(zip(DECA_BLOCKS, (64, 128, 256, 512)), start=1):
        for block in range(blocks):
            prefix = f"encoder.layer{stage}.{block}"
            conv(f"{prefix}.conv1", width, channels, 1)
            bn(f"{prefix}.bn1", width)
            conv(f"{prefix}.conv2", width, width, 3)
            bn(f"{prefix}.bn2", width)
            conv(f"{prefix}.conv3", width * 4, width, 1)
            bn(f"{prefix}.bn3", width * 4, damp=True)
            if block == 0:
                conv(f"{prefix}.downsample.0", width * 4, channels, 1)
                bn(f"{prefix}.downsample.1", width * 4)
            channels = width * 4
    for index, (out_f, in_f) in ((0, (1024, 2048)), (2, (code_size, 1024))):
        state[f"layers.{index}.weight"] = torch.randn(out_f, in_f, generator=gen) * (1.0 / in_f) ** 0.5
        state[f"layers.{index}.bias"] = torch.randn(out_f, generator=gen) * 0.1
    return state


def deca_checkpoint(path, e_flame=None, legacy=False, **extra):
    """Write ``deca_model.tar``: ``E_flame`` (full size) plus abbreviated ``E_detail`` / ``D_detail``.

    The detail networks are cut to a few tensors of their real names (the
    loader never reads them; full-size they would double the file).
    """
    gen = torch.Generator().manual_seed(1)
    data = {"E_flame": deca_e_flame_state() if e_flame is None else e_flame,
            "E_detail": OrderedDict([("layers.2.weight", torch.randn(128, 1024, generator=gen)),
                                     ("layers.2.bias", torch.zeros(128))]),
            "D_detail": OrderedDict([("l1.0.bias", torch.zeros(128 * 8 * 8)),  # l1.0: Linear(128 + 50 + 3, 8192)
                                     ("conv_blocks.0.running_var", torch.ones(128))]), **extra}
    torch.save(data, path, _use_new_zipfile_serialization=not legacy)
    return path


# --------------------------------------------------------------------------- crafted torch files

class _ClaimedStorage:
    """Pickled as torch's persistent id of a float storage of ``numel`` elements."""

    def __init__(self, numel):
        self.numel = numel


class _TensorOn:
    def __init__(self, storage: _ClaimedStorage):
        self.storage = storage

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (self.storage, 0, (2,), (1,), False, OrderedDict())


class _ClaimPickler(pickle.Pickler):
    legacy = False

    def persistent_id(self, obj):
        if isinstance(obj, _ClaimedStorage):  # legacy ids carry a sixth item, the view (None)
            return ("storage", torch.FloatStorage, "0", "cpu", obj.numel) + ((None,) if self.legacy else ())
        return None


def torch_file_claiming(path, numel, legacy: bool, record_chunks=(b"\0" * 8,),
                        record_compression=zipfile.ZIP_STORED) -> None:
    """``torch.save({'w': tensor})`` as torch lays it out, but the storage claims ``numel`` float32
    elements and holds ``record_chunks`` (streamed, so a large record costs the test no memory)."""
    buffer = io.BytesIO()
    pickler = _ClaimPickler(buffer, protocol=2)
    pickler.legacy = legacy
    pickler.dump({"w": _TensorOn(_ClaimedStorage(numel))})
    if legacy:
        with open(path, "wb") as handle:
            for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
                pickle.dump(header, handle, protocol=2)
            handle.write(buffer.getvalue())
            pickle.dump(["0"], handle, protocol=2)
            handle.write(struct.pack("<q", numel if isinstance(numel, int) else 0))
            for chunk in record_chunks:
                handle.write(chunk)
        return
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        record = zipfile.ZipInfo("archive/data/0")
        record.compress_type = record_compression
        with archive.open(record, "w") as handle:
            for chunk in record_chunks:
                handle.write(chunk)
        archive.writestr("archive/version", "3\n")
