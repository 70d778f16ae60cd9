"""FLAME head model files and linear blend skinning, in numpy.

FLAME is never bundled (CC-BY-4.0 with use restrictions); users point to their
own copy.  Readable files:

``generic_model.pkl``  FLAME 2020 (and 2017/2019): a Python 2 pickle of a dict
                       with chumpy arrays and a scipy.sparse ``J_regressor``,
                       read through the allow-list unpickler.
``flame2023.pkl``      FLAME 2023 (with or without jaw rotation), same keys.
``.npz``               the same keys as plain arrays (``J_regressor`` dense);
                       read with ``allow_pickle=False``.

Keys: ``v_template`` [V,3], ``shapedirs`` [V,3,300+E] (300 identity then E
expression components, E = 100 in the released models), ``posedirs`` [V,3,36]
(pose correctives driven by the 4 non-root joints' rotation matrices minus
identity), ``J_regressor`` [5,V], ``weights`` [V,5], ``kintree_table`` [2,5]
(row 0: parents, root's parent is -1 or 2**32-1), ``f`` [F,3].

Joints: 0 global (root), 1 neck, 2 jaw, 3 left eye, 4 right eye, matching the
rig channels' ``head_*``/``neck_*``/``jaw_*``/``eye_l_*``/``eye_r_*``.
Skinning follows FLAME's own ``lbs``: shape and expression blend shapes, pose
correctives, joints regressed from the shaped mesh, rigid transforms along the
kinematic tree, then a weighted blend of the joint transforms per vertex.
This module imports only numpy (the Blender extension ships it).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract.channels import ChannelLayout, axis_angle_to_matrix, head_rotation_matrix, matrix_to_axis_angle
from ..contract.errors import AssetError
from .safe_pickle import load_pickle

NUM_JOINTS = 5
NUM_SHAPE = 300  # identity components come first in shapedirs; expression components follow
JOINT_NAMES = ("global", "neck", "jaw", "eye_l", "eye_r")
REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


@dataclass(frozen=True)
class FlameModel:
    v_template: np.ndarray   # [V, 3]
    shapedirs: np.ndarray    # [V, 3, S] identity blend shapes
    exprdirs: np.ndarray     # [V, 3, E] expression blend shapes
    posedirs: np.ndarray     # [V, 3, 36] pose correctives, (R_j - I) of joints 1..4, row-major
    j_regressor: np.ndarray  # [5, V]
    weights: np.ndarray      # [V, 5] skinning weights
    parents: np.ndarray      # [5] parent joint of each joint, -1 for the root
    faces: np.ndarray        # [F, 3] vertex indices
    source: str = ""

    @property
    def num_vertices(self) -> int:
        return len(self.v_template)

    @property
    def num_shape(self) -> int:
        return self.shapedirs.shape[2]

    @property
    def num_expressions(self) -> int:
        return self.exprdirs.shape[2]

    # ----------------------------------------------------------------- blend shapes and skinning

    def shaped(self, shape=None, expression=None) -> np.ndarray:
        """Rest-pose vertices with identity and expression blend shapes applied ([V, 3])."""
        vertices = self.v_template.astype(np.float64, copy=True)
        for coefficients, directions, what in ((shape, self.shapedirs, "shape"),
                                               (expression, self.exprdirs, "expression")):
            if coefficients is None:
                continue
            coefficients = np.asarray(coefficients, dtype=np.float64).reshape(-1)
            if len(coefficients) > directions.shape[2]:
                raise ValueError(f"{len(coefficients)} {what} coefficients, the model has {directions.shape[2]}")
            vertices += directions[:, :, :len(coefficients)] @ coefficients
        return vertices

    def joints(self, shaped: np.ndarray) -> np.ndarray:
        """Rest joint locations regressed from the shaped mesh ([5, 3])."""
        return self.j_regressor @ shaped

    def pose(self, pose, shape=None, expression=None, transl=None) -> tuple[np.ndarray, np.ndarray]:
        """Posed vertices [V, 3] and posed joints [5, 3].

        ``pose`` is [5, 3] axis-angle (global, neck, jaw, left eye, right eye).
        """
        pose = np.asarray(pose, dtype=np.float64).reshape(NUM_JOINTS, 3)
        rest = self.shaped(shape, expression)
        joints = self.joints(rest)
        rotations = np.stack([axis_angle_to_matrix(aa) for aa in pose])
        pose_feature = (rotations[1:] - np.eye(3)).reshape(-1)
        posed_rest = rest + self.posedirs @ pose_feature
        world = self._world_transforms(rotations, joints)
        # Joint transforms relative to the rest pose: move to the joint, rotate, carry along the chain.
        skinning = world.copy()
        skinning[:, :3, 3] -= np.einsum("jab,jb->ja", world[:, :3, :3], joints)
        blended = np.einsum("vj,jab->vab", self.weights, skinning)
        vertices = np.einsum("vab,vb->va", blended[:, :3, :3], posed_rest) + blended[:, :3, 3]
        posed_joints = world[:, :3, 3]
        if transl is not None:
            offset = np.asarray(transl, dtype=np.float64).reshape(1, 3)
            vertices, posed_joints = vertices + offset, posed_joints + offset
        return vertices, posed_joints

    def _world_transforms(self, rotations: np.ndarray, joints: np.ndarray) -> np.ndarray:
        local = np.tile(np.eye(4), (NUM_JOINTS, 1, 1))
        local[:, :3, :3] = rotations
        local[:, :3, 3] = joints
        local[1:, :3, 3] -= joints[self.parents[1:]]
        world = np.empty_like(local)
        world[0] = local[0]
        for joint in range(1, NUM_JOINTS):  # parents precede children in FLAME's kintree
            world[joint] = world[self.parents[joint]] @ local[joint]
        return world


# --------------------------------------------------------------------------- rig channels -> FLAME inputs

def flame_pose_from_channels(frame: np.ndarray, layout: ChannelLayout) -> tuple[np.ndarray, np.ndarray]:
    """One channel frame -> (pose [5, 3] axis-angle, expression [E]) in FLAME's joint order."""
    frame = np.asarray(frame, dtype=np.float64)
    head = frame[layout.slice("head")]
    eyes = frame[layout.slice("eyes")].reshape(2, 3)
    pose = np.stack([matrix_to_axis_angle(head_rotation_matrix(*head)), frame[layout.slice("neck")],
                     frame[layout.slice("jaw")], eyes[0], eyes[1]])
    return pose, frame[layout.slice("expression")]


# --------------------------------------------------------------------------- reading

def read_flame_model(path: str | os.PathLike, num_shape: int = NUM_SHAPE) -> FlameModel:
    """Read a FLAME 2020 / 2023 ``.pkl`` or an ``.npz`` with the same keys; check every shape."""
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"{path}: FLAME model file not found")
    if path.suffix.lower() == ".npz":
        arrays = _read_npz(path)
    else:
        arrays = load_pickle(path)
    if not isinstance(arrays, dict):
        raise AssetError(f"{path}: expected a FLAME model (a dict of arrays), got a {type(arrays).__name__}")
    return _model_from_arrays(arrays, path, num_shape)


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise AssetError(f"{path}: not a readable FLAME .npz (plain arrays, no pickled objects) ({exc})") from None


def _model_from_arrays(arrays: dict, path: Path, num_shape: int) -> FlameModel:
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise AssetError(f"{path}: not a FLAME model, missing '{missing[0]}' (expected keys "
                         f"{', '.join(REQUIRED_KEYS)})")

    def array(key, dtype=np.float64):
        try:
            value = np.asarray(arrays[key], dtype=dtype)
        except (TypeError, ValueError):
            raise AssetError(f"{path}: FLAME '{key}' is not a numeric array") from None
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise AssetError(f"{path}: FLAME '{key}' holds NaN or infinite values")
        return value

    def expect(key, value, shape):
        if value.shape != shape:
            readable = "[" + ", ".join(str(n) for n in shape) + "]"
            raise AssetError(f"{path}: FLAME '{key}' has shape {list(value.shape)}, expected {readable}")

    v_template = array("v_template")
    if v_template.ndim != 2 or v_template.shape[1] != 3 or len(v_template) < 1:
        raise AssetError(f"{path}: FLAME 'v_template' has shape {list(v_template.shape)}, expected [V, 3]")
    vertices = len(v_template)
    shapedirs = array("shapedirs")
    if shapedirs.ndim != 3 or shapedirs.shape[:2] != (vertices, 3) or shapedirs.shape[2] <= num_shape:
        raise AssetError(f"{path}: FLAME 'shapedirs' has shape {list(shapedirs.shape)}, expected "
                         f"[{vertices}, 3, {num_shape} shape + expression components]")
    posedirs = array("posedirs")
    if posedirs.shape == (vertices * 3, 36):  # some conversions flatten vertices and coordinates
        posedirs = posedirs.reshape(vertices, 3, 36)
    expect("posedirs", posedirs, (vertices, 3, (NUM_JOINTS - 1) * 9))
    j_regressor = array("J_regressor")
    expect("J_regressor", j_regressor, (NUM_JOINTS, vertices))
    weights = array("weights")
    expect("weights", weights, (vertices, NUM_JOINTS))
    kintree = array("kintree_table", np.int64)
    expect("kintree_table", kintree, (2, NUM_JOINTS))
    parents = kintree[0].copy()
    parents[0] = -1  # stored as -1 or as 2**32 - 1 (uint32)
    if not all(0 <= parents[j] < j for j in range(1, NUM_JOINTS)):
        raise AssetError(f"{path}: FLAME 'kintree_table' parents {parents.tolist()} are not a tree "
                         f"rooted at joint 0 with parents before children")
    faces = array("f", np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or (faces.size and (faces.min() < 0 or faces.max() >= vertices)):
        raise AssetError(f"{path}: FLAME 'f' must be [F, 3] vertex indices below {vertices}")
    return FlameModel(v_template=v_template, shapedirs=shapedirs[:, :, :num_shape],
                      exprdirs=shapedirs[:, :, num_shape:], posedirs=posedirs, j_regressor=j_regressor,
                      weights=weights, parents=parents, faces=faces, source=str(path))
