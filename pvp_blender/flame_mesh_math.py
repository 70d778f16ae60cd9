"""A FLAME model laid out for a Blender mesh on the head rig.  No bpy: numpy, tested with pytest.

The mesh reproduces FLAME's own skinning with Blender's native pieces:

* **expression blend shapes** -> shape keys ``expr_00`` ..., one per rig
  expression channel, driven by the rig's ``expr_NN`` properties;
* **pose correctives** (``posedirs``) -> 36 shape keys ``pose_00`` ... ``pose_35``
  whose values are FLAME's pose feature: the entries of ``R_j - I`` for the
  neck, jaw, left and right eye local rotations (row-major, in FLAME axes);
* **joint rotations** -> the rig's armature: bone heads sit on FLAME's joints
  (regressed from the template) and vertex groups carry FLAME's skinning weights;
* **ARKit sliders** (a map on the rig) -> one shape key per ARKit name, ``arkit_jawOpen`` ...,
  driven by the rig's ``arkit_*`` property: the map's expression column times the expression
  blend shapes, plus its jaw and eye rotations linearised (``omega x (v - joint)`` times the
  joint's skin weight; a display approximation, within a few per cent of the rotation's
  displacement at 0.3 rad; renders use the exact channels).

Everything is in the rig's armature space: Blender axes (``BLENDER_TO_FLAME``),
origin at FLAME's root joint, which is where the rig's ``head`` bone starts.
Blender keeps joints where the template puts them, while FLAME regresses them
from the expression-shaped mesh; the difference is the only way the two can
disagree, and it is millimetres for ordinary expressions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..pvp_runtime.contract.channels import BLENDER_TO_FLAME, ChannelLayout, axis_angle_to_matrix
from ..pvp_runtime.formats.flame import FlameModel, flame_pose_from_channels
from .rig_math import RIG_BONES

BONE_OF_JOINT = tuple(bone.name for bone in RIG_BONES)  # FLAME joints 0..4 = head, neck, jaw, eye.L, eye.R
NUM_CORRECTIVES = 36
SHAPE_KEY_LIMIT = 10.0  # Blender's widest shape-key slider range


def corrective_name(index: int) -> str:
    return f"pose_{index:02d}"


@dataclass
class FlameMeshData:
    vertices: np.ndarray            # [V, 3] armature space
    faces: np.ndarray               # [F, 3]
    joints: np.ndarray              # [5, 3] bone heads, armature space, in BONE_OF_JOINT order
    weights: np.ndarray             # [V, 5] skinning weights, BONE_OF_JOINT order
    expression_offsets: np.ndarray  # [E, V, 3]
    corrective_offsets: np.ndarray  # [36, V, 3]


def to_blender(points_flame: np.ndarray) -> np.ndarray:
    """FLAME-axis row vectors -> Blender axes (``v_blender = BLENDER_TO_FLAME.T @ v_flame``)."""
    return np.asarray(points_flame, dtype=np.float64) @ BLENDER_TO_FLAME


def flame_mesh_data(model: FlameModel, num_expressions: int) -> FlameMeshData:
    joints = model.joints(model.v_template)
    origin = joints[0]
    count = min(num_expressions, model.num_expressions)
    return FlameMeshData(
        vertices=to_blender(model.v_template - origin),
        faces=np.asarray(model.faces, dtype=np.int64),
        joints=to_blender(joints - origin),
        weights=np.asarray(model.weights, dtype=np.float64),
        expression_offsets=np.stack([to_blender(model.exprdirs[:, :, i]) for i in range(count)])
        if count else np.zeros((0, model.num_vertices, 3)),
        corrective_offsets=np.stack([to_blender(model.posedirs[:, :, k]) for k in range(NUM_CORRECTIVES)]))


def corrective_values(frame: np.ndarray, layout: ChannelLayout) -> np.ndarray:
    """FLAME's pose feature for one channel frame: ``(R_j - I)`` of joints 1..4, flattened ([36])."""
    pose, _ = flame_pose_from_channels(frame, layout)
    return np.concatenate([(axis_angle_to_matrix(aa) - np.eye(3)).reshape(-1) for aa in pose[1:]])


def posed_vertices(model: FlameModel, frame: np.ndarray, layout: ChannelLayout) -> np.ndarray:
    """What the Blender mesh should show for a frame, computed with FLAME's own skinning (armature space)."""
    pose, expression = flame_pose_from_channels(frame, layout)
    count = min(len(expression), model.num_expressions)
    vertices, _ = model.pose(pose, expression=expression[:count])
    return to_blender(vertices - model.joints(model.v_template)[0])


#: The rotating joints a map can move, with their channel group offsets (jaw, left eye, right eye).
_MAPPED_JOINTS = ((2, "jaw", 0), (3, "eyes", 0), (4, "eyes", 3))


def face_offsets(data: FlameMeshData, weights: np.ndarray, layout: ChannelLayout) -> np.ndarray:
    """``[52, V, 3]``: what one unit of each ARKit slider adds to the mesh, from ``weights`` [C, 52]
    (the map on ``layout``, ``contract.arkit.ArkitMap.on_layout``)."""
    expression = layout.slice("expression")
    count = min(layout.num_expressions, len(data.expression_offsets))
    rows = weights[expression.start:expression.start + count]          # [E, 52]
    offsets = np.einsum("ea,evc->avc", rows, data.expression_offsets[:count])
    for joint, group, start in _MAPPED_JOINTS:
        part = layout.slice(group)
        omega_flame = weights[part.start + start:part.start + start + 3]  # [3, 52] axis-angle per unit slider
        if not omega_flame.any():
            continue
        omega = (BLENDER_TO_FLAME.T @ omega_flame).T                    # [52, 3] in Blender axes
        arm = data.vertices - data.joints[joint]                        # [V, 3]
        offsets += data.weights[None, :, joint, None] * np.cross(omega[:, None, :], arm[None])
    return offsets
