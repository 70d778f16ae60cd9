"""FLAME model files in each real layout, and linear blend skinning."""

import math
import pickle

import numpy as np
import pytest
import scipy.sparse

from pvp_runtime.contract.channels import ChannelLayout, axis_angle_to_matrix
from pvp_runtime.contract.errors import AssetError
from pvp_runtime.formats.flame import NUM_SHAPE, flame_pose_from_channels, read_flame_model

from asset_builders import py2_pickle, stand_in_modules

V = 12
JOINT_OF_VERTEX = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


class Ch:
    """Pickles like ``chumpy.ch.Ch``: NEWOBJ of the class, then its ``__dict__`` (minus weakrefs)."""

    def __init__(self, x):
        self.x = x
        self._dirty_vars = set()
        self._itr = None
        self._depends_on_deps = {}


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


def chumpy_layout(arrays):
    """As FLAME ships it: chumpy arrays for the blend shapes, scipy CSC for J_regressor."""
    out = dict(arrays)
    for key in ("v_template", "shapedirs", "posedirs", "J"):
        out[key] = Ch(arrays[key])
    out["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
    return out


@pytest.fixture(scope="module")
def arrays():
    return tiny_flame_arrays()


@pytest.fixture(params=["flame2020_py2_pkl", "flame2023_pkl", "npz"])
def model_file(request, tmp_path, arrays):
    if request.param == "npz":
        path = tmp_path / "flame.npz"
        np.savez(path, **{k: v for k, v in arrays.items() if isinstance(v, np.ndarray)})
        return path
    path = tmp_path / ("generic_model.pkl" if request.param == "flame2020_py2_pkl" else "flame2023.pkl")
    with stand_in_modules(chumpy__ch={"Ch": Ch}):
        data = chumpy_layout(arrays)
        blob = py2_pickle(data) if request.param == "flame2020_py2_pkl" else pickle.dumps(data, protocol=4)
    assert b"chumpy.ch" in blob and b"scipy.sparse" in blob  # the real globals, resolved by the allow-list
    path.write_bytes(blob)
    return path


def test_every_layout_reads_to_the_same_model(model_file, arrays):
    model = read_flame_model(model_file)
    np.testing.assert_allclose(model.v_template, arrays["v_template"])
    np.testing.assert_allclose(model.shapedirs, arrays["shapedirs"][:, :, :NUM_SHAPE])
    np.testing.assert_allclose(model.exprdirs, arrays["shapedirs"][:, :, NUM_SHAPE:])
    np.testing.assert_allclose(model.posedirs, arrays["posedirs"])
    np.testing.assert_allclose(model.j_regressor, arrays["J_regressor"])
    assert model.parents.tolist() == [-1, 0, 1, 1, 1]
    assert model.num_expressions == 100 and model.num_shape == NUM_SHAPE and model.faces.shape == (3, 3)


def test_rest_pose_and_blend_shapes(arrays, tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if isinstance(v, np.ndarray)})
    model = read_flame_model(path)
    vertices, joints = model.pose(np.zeros((5, 3)))
    np.testing.assert_allclose(vertices, arrays["v_template"], atol=1e-12)
    np.testing.assert_allclose(joints, arrays["J_regressor"] @ arrays["v_template"], atol=1e-12)
    expression = np.zeros(100)
    expression[7] = 2.0
    shape = np.zeros(300)
    shape[3] = -1.0
    vertices, _ = model.pose(np.zeros((5, 3)), shape=shape, expression=expression)
    expected = arrays["v_template"] + 2.0 * arrays["shapedirs"][:, :, 307] - arrays["shapedirs"][:, :, 3]
    np.testing.assert_allclose(vertices, expected, atol=1e-12)


def test_global_rotation_turns_everything_about_the_root_joint(arrays, tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if isinstance(v, np.ndarray)})
    model = read_flame_model(path)
    pose = np.zeros((5, 3))
    pose[0] = [0.1, 0.7, -0.2]
    vertices, joints = model.pose(pose)
    rotation = axis_angle_to_matrix(pose[0])
    root = model.joints(model.v_template)[0]
    # Only non-root joints drive the pose correctives, so a global turn is rigid.
    np.testing.assert_allclose(vertices, (arrays["v_template"] - root) @ rotation.T + root, atol=1e-12)
    np.testing.assert_allclose(joints[0], root, atol=1e-12)


def test_jaw_moves_only_its_vertices_about_the_jaw_joint_plus_correctives(arrays, tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if isinstance(v, np.ndarray)})
    model = read_flame_model(path)
    pose = np.zeros((5, 3))
    pose[2] = [0.3, 0.0, 0.0]  # open the jaw
    vertices, joints = model.pose(pose)
    rotation = axis_angle_to_matrix(pose[2])
    feature = np.zeros(36)
    feature[9:18] = (rotation - np.eye(3)).reshape(-1)  # joint 2 is the second non-root joint
    corrected = arrays["v_template"] + arrays["posedirs"] @ feature
    jaw = model.joints(model.v_template)[2]
    for v in range(V):
        if JOINT_OF_VERTEX[v] == 2:
            np.testing.assert_allclose(vertices[v], rotation @ (corrected[v] - jaw) + jaw, atol=1e-12)
        else:
            np.testing.assert_allclose(vertices[v], corrected[v], atol=1e-12)
    # Eyes hang off the neck, not the jaw: their joints do not move.
    np.testing.assert_allclose(joints[3:], model.joints(model.v_template)[3:], atol=1e-12)


def test_neck_carries_jaw_and_eyes(arrays, tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if isinstance(v, np.ndarray)})
    model = read_flame_model(path)
    pose = np.zeros((5, 3))
    pose[1] = [0.0, 0.0, 0.4]
    _, joints = model.pose(pose)
    rest = model.joints(model.v_template)
    rotation = axis_angle_to_matrix(pose[1])
    for child in (2, 3, 4):
        np.testing.assert_allclose(joints[child], rotation @ (rest[child] - rest[1]) + rest[1], atol=1e-12)


def test_channels_to_flame_pose():
    layout = ChannelLayout(10)
    frame = layout.defaults(1)[0]
    frame[layout.index("head_yaw")] = 0.5
    frame[layout.index("jaw_x")] = 0.2
    frame[layout.index("eye_r_y")] = -0.1
    frame[layout.index("expr_03")] = 1.5
    pose, expression = flame_pose_from_channels(frame, layout)
    np.testing.assert_allclose(pose[0], [0, 0.5, 0], atol=1e-6)  # yaw is a turn about +y
    np.testing.assert_allclose(pose[2], [0.2, 0, 0], atol=1e-6)
    np.testing.assert_allclose(pose[4], [0, -0.1, 0], atol=1e-6)
    assert expression.shape == (10,) and math.isclose(expression[3], 1.5)


@pytest.mark.parametrize("edit, message", [
    (lambda a: a.pop("posedirs"), "missing 'posedirs'"),
    (lambda a: a.update(weights=np.ones((V, 4))), r"'weights' has shape \[12, 4\], expected \[12, 5\]"),
    (lambda a: a.update(shapedirs=np.zeros((V, 3, 300))), "shape \\+ expression components"),
    (lambda a: a.update(J_regressor=np.zeros((5, V + 1))), "'J_regressor' has shape"),
    (lambda a: a.update(kintree_table=np.array([[-1, 0, 3, 1, 1], [0, 1, 2, 3, 4]])), "not a tree"),
    (lambda a: a.update(f=np.array([[0, 1, 99]])), "vertex indices below 12"),
    (lambda a: a.update(v_template=np.full((V, 3), np.nan)), "NaN"),
])
def test_wrong_shapes_are_named(tmp_path, edit, message):
    arrays = tiny_flame_arrays()
    edit(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if isinstance(v, np.ndarray)})
    with pytest.raises(AssetError, match=message) as error:
        read_flame_model(path)
    assert str(path) in str(error.value)


def test_wrong_kind_and_truncated_files(tmp_path, arrays):
    not_flame = tmp_path / "other.pkl"
    not_flame.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(AssetError, match="expected a FLAME model"):
        read_flame_model(not_flame)
    with stand_in_modules(chumpy__ch={"Ch": Ch}):
        blob = py2_pickle(chumpy_layout(arrays))
    cut = tmp_path / "generic_model.pkl"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(AssetError, match="truncated|corrupt"):
        read_flame_model(cut)
    objects = tmp_path / "objects.npz"
    np.savez(objects, **{**{k: v for k, v in arrays.items() if isinstance(v, np.ndarray)},
                         "f": np.array([None, 1], dtype=object)})
    with pytest.raises(AssetError, match="no pickled objects"):
        read_flame_model(objects)
    with pytest.raises(AssetError, match="not found"):
        read_flame_model(tmp_path / "nowhere.pkl")
