"""Fit inputs: readers, validation before work, alignment, pivots, masks."""

import json
import math

import cv2
import numpy as np
import pytest

from pvp_runtime.contract.channel_files import write_channel_file
from pvp_runtime.contract.channels import ChannelLayout
from pvp_runtime.contract.errors import PVPError
from pvp_runtime.fit.alignment import (alignment_transforms, ffhq_quad, roll_removed,
                                       smooth_over_time, transform_points, warp)
from pvp_runtime.fit.config import DataConfig, MaskConfig
from pvp_runtime.fit.data import FrameSource, inspect_inputs, read_landmarks, split_frames
from pvp_runtime.fit.masks import batch_masks, eye_mouth_mask
from pvp_runtime.fit.pivots import nearest_frames, pivot_features, select_pivots
from pvp_runtime.fit.synthetic import canonical_landmarks, face_template

LAYOUT = ChannelLayout(4)


def _frames(folder, count, size=(16, 16), start=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(folder / f"f_{start + i}.png"), rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    return folder


def _channels(path, count):
    frames = LAYOUT.defaults(count)
    frames[:, LAYOUT.index("head_yaw")] = np.linspace(-0.5, 0.5, count)
    write_channel_file(path, frames, LAYOUT)
    return path


def _fails(words, call, *args, **kwargs):
    with pytest.raises(PVPError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


def test_folder_is_read_in_natural_order_and_split(tmp_path):
    folder = _frames(tmp_path / "frames", 12)
    source = FrameSource.open(folder)
    assert source.count == 12 and [p.name for p in source.files][:3] == ["f_0.png", "f_1.png", "f_2.png"]
    assert source.files[10].name == "f_10.png"
    inputs = inspect_inputs(folder, _channels(tmp_path / "c.csv", 12), LAYOUT, DataConfig())
    assert list(inputs.split.held_out) == [10, 11] and list(inputs.split.train) == list(range(10))
    assert list(split_frames(12, DataConfig(held_out_frames=5)).held_out) == [7, 8, 9, 10, 11]
    first = next(iter(source))
    assert first.shape == (16, 16, 3) and first.dtype == np.uint8


def test_video_input(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (16, 16))
    for i in range(7):
        writer.write(np.full((16, 16, 3), i * 30, np.uint8))
    writer.release()
    source = FrameSource.open(path)
    assert source.kind == "video" and source.count == 7 and (source.width, source.height) == (16, 16)
    assert len(list(source)) == 7
    inspect_inputs(path, _channels(tmp_path / "c.csv", 7), LAYOUT, DataConfig())
    _fails(["c8.csv", "8 frames", "7 frames"], inspect_inputs, path, _channels(tmp_path / "c8.csv", 8), LAYOUT,
           DataConfig())


def test_bad_inputs_are_refused_with_one_line(tmp_path):
    folder = _frames(tmp_path / "frames", 6)
    channels = _channels(tmp_path / "c.csv", 6)
    data = DataConfig()
    _fails(["nowhere", "not found"], inspect_inputs, tmp_path / "nowhere", channels, LAYOUT, data)
    (tmp_path / "empty").mkdir()
    _fails(["empty", "no images"], inspect_inputs, tmp_path / "empty", channels, LAYOUT, data)
    _fails(["c5.csv", "5 frames", "6 frames"], inspect_inputs, folder, _channels(tmp_path / "c5.csv", 5), LAYOUT, data)
    # An unreadable frame is named.
    broken = _frames(tmp_path / "broken", 6)
    (broken / "f_3.png").write_bytes(b"not a png")
    _fails(["f_3.png", "unreadable", "frame 3"], inspect_inputs, broken, channels, LAYOUT, data)
    # Frames of different sizes.
    mixed = _frames(tmp_path / "mixed", 6)
    _frames(mixed, 1, size=(20, 16), start=4)
    _fails(["f_4.png", "20x16", "16x16"], inspect_inputs, mixed, channels, LAYOUT, data)
    # Non-square frames need landmarks.
    wide = _frames(tmp_path / "wide", 6, size=(24, 16))
    _fails(["24x16", "--landmarks"], inspect_inputs, wide, channels, LAYOUT, data)
    # Landmarks: count, shape, finiteness, units.
    np.save(tmp_path / "lm5.npy", np.zeros((5, 68, 2)))
    _fails(["lm5.npy", "5 frames", "6 frames"], inspect_inputs, folder, channels, LAYOUT, data, tmp_path / "lm5.npy")
    np.save(tmp_path / "lm_shape.npy", np.zeros((6, 5, 2)))
    _fails(["lm_shape.npy", "[frames, 68, 2]"], inspect_inputs, folder, channels, LAYOUT, data,
           tmp_path / "lm_shape.npy")
    nan = np.full((6, 68, 2), 8.0)
    nan[2, 10, 0] = np.nan
    np.save(tmp_path / "lm_nan.npy", nan)
    _fails(["lm_nan.npy", "frame 2", "non-finite"], inspect_inputs, folder, channels, LAYOUT, data,
           tmp_path / "lm_nan.npy")
    far = np.full((6, 68, 2), 8.0)
    far[4] = 5000
    np.save(tmp_path / "lm_far.npy", far)
    _fails(["lm_far.npy", "frame 4", "outside"], inspect_inputs, folder, channels, LAYOUT, data,
           tmp_path / "lm_far.npy")
    np.save(tmp_path / "lm_obj.npy", np.array([object()] * 3, dtype=object), allow_pickle=True)
    _fails(["lm_obj.npy", "not a readable landmarks file"], read_landmarks, tmp_path / "lm_obj.npy")
    (tmp_path / "landmarks.txt").write_text("1 2")
    _fails(["landmarks.txt", "unsupported"], read_landmarks, tmp_path / "landmarks.txt")
    # Mattes: count and size.
    _fails(["mattes", "5 mattes"], inspect_inputs, folder, channels, LAYOUT, data, None,
           _frames(tmp_path / "mattes", 5))
    _fails(["mattes2", "8x8"], inspect_inputs, folder, channels, LAYOUT, data, None,
           _frames(tmp_path / "mattes2", 6, size=(8, 8)))
    # Not enough training frames for the pivots; nothing to train on.
    _fails(["5 training frames", "10 pivots"], inspect_inputs, folder, channels, LAYOUT, data, min_train_frames=10)
    _fails(["holding out 6 of 6"], inspect_inputs, folder, channels, LAYOUT, DataConfig(held_out_frames=6))
    # A bad channel value is the channel file's error, naming frame and channel.
    bad = LAYOUT.defaults(6)
    bad[3, LAYOUT.index("jaw_x")] = 100
    (tmp_path / "bad.csv").write_text("jaw_x\n" + "\n".join(str(v) for v in bad[:, LAYOUT.index("jaw_x")]) + "\n")
    _fails(["bad.csv", "frame 3", "jaw_x"], inspect_inputs, folder, tmp_path / "bad.csv", LAYOUT, data)


def test_landmark_file_layouts(tmp_path):
    array = np.random.default_rng(1).uniform(0, 10, (3, 68, 2)).astype(np.float32)
    np.save(tmp_path / "a.npy", array)
    np.savez(tmp_path / "a.npz", landmarks=array)
    (tmp_path / "a.json").write_text(json.dumps({"landmarks": array.tolist()}))
    for name in ("a.npy", "a.npz", "a.json"):
        assert np.allclose(read_landmarks(tmp_path / name), array)
    np.savez(tmp_path / "b.npz", points=array)
    _fails(["b.npz", "no 'landmarks' array"], read_landmarks, tmp_path / "b.npz")


# --------------------------------------------------------------------------- alignment

def test_canonical_face_fills_its_ffhq_crop():
    landmarks = canonical_landmarks(64)
    quad = ffhq_quad(landmarks)
    assert np.allclose(quad, [[0, 0], [0, 64], [64, 64], [64, 0]], atol=1e-3)
    # FFHQ geometry: eyes level, mouth below them, everything inside the crop.
    assert abs(landmarks[36:42, 1].mean() - landmarks[42:48, 1].mean()) < 1e-3
    assert landmarks[48:60, 1].mean() > landmarks[36:48, 1].mean()
    assert ((landmarks > 0) & (landmarks < 64)).all()


def test_alignment_undoes_a_similarity_and_keeps_the_transform():
    rng = np.random.default_rng(3)
    crop = cv2.GaussianBlur(rng.integers(0, 255, (64, 64, 3)).astype(np.uint8), (5, 5), 1.5)
    landmarks = canonical_landmarks(64)
    angle, scale = 17.0, 1.6
    place = cv2.getRotationMatrix2D((32, 32), angle, scale)
    place[:, 2] += (50, 40)
    frame = cv2.warpAffine(crop, place, (200, 160), flags=cv2.INTER_CUBIC)
    moved = transform_points(landmarks, place)
    transform = alignment_transforms(moved[None], 64, sigma=0)[0]
    # The frame shows the head rolled counter-clockwise by `angle`; the crop took that roll out.
    assert math.degrees(roll_removed(transform)) == pytest.approx(angle, abs=1e-3)
    assert np.allclose(transform_points(moved, transform), landmarks, atol=1e-3)
    aligned = warp(frame, transform, 64)
    inner = (slice(8, 56), slice(8, 56))
    assert np.abs(aligned[inner].astype(float) - crop[inner]).mean() < 4.0
    # Downscaling path (crop smaller than the face): still the same picture, box-filtered.
    small = warp(frame, alignment_transforms(moved[None], 16, 0)[0], 16)
    reference = cv2.resize(crop, (16, 16), interpolation=cv2.INTER_AREA)
    assert np.abs(small[2:14, 2:14].astype(float) - reference[2:14, 2:14]).mean() < 8.0


def test_temporal_smoothing_removes_jitter_and_keeps_motion():
    t = np.arange(60, dtype=np.float64)
    motion = np.stack([np.sin(t / 10), np.cos(t / 10)], axis=1)[:, None].repeat(68, axis=1) * 20
    jitter = np.random.default_rng(0).normal(0, 1.0, motion.shape)
    smoothed = smooth_over_time(motion + jitter, sigma=2.0)
    assert np.abs(smoothed - motion)[5:-5].std() < 0.5 * jitter.std()
    assert np.allclose(smooth_over_time(motion, 0), motion, atol=1e-4)
    constant = np.ones((4, 68, 2))
    assert np.allclose(smooth_over_time(constant, 3.0), constant)


def test_passthrough_is_a_plain_resize():
    image = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    from pvp_runtime.fit.alignment import passthrough_transform
    out = warp(image, passthrough_transform(48, 16), 16)
    assert np.array_equal(out, cv2.resize(image, (16, 16), interpolation=cv2.INTER_AREA))
    assert np.array_equal(warp(image, passthrough_transform(48, 48), 48), image)


# --------------------------------------------------------------------------- pivots

def test_pivots_cover_every_cluster():
    layout = ChannelLayout(3)
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (5, layout.size)).astype(np.float32) * 0.3
    centres[:, layout.slice("eyes")] = 0
    centres[:, layout.slice("neck")] = 0  # a source with no neck pose
    labels = np.repeat(np.arange(5), 12)
    channels = centres[labels] + rng.normal(0, 0.01, (60, layout.size)).astype(np.float32)
    channels[:, layout.slice("eyes")] = 0
    channels[:, layout.slice("neck")] = 0
    order = rng.permutation(60)
    channels, labels = channels[order], labels[order]
    train = np.arange(60)
    choice = select_pivots(channels, train, layout, 5, seed=0)
    assert sorted(labels[choice.frames]) == [0, 1, 2, 3, 4]  # one pivot in each true cluster
    assert sorted(choice.cluster_sizes) == [12] * 5
    for k, frame in enumerate(choice.frames):
        assert choice.labels[list(train).index(frame)] == k  # each pivot belongs to its own cluster
    assert "neck_x" not in choice.features and "pitch" in choice.features and "expr_0" not in choice.features
    assert choice.to_dict()["frames"] == [int(f) for f in choice.frames]
    # Same seed, same choice; a different subset of training frames only picks among them.
    assert np.array_equal(select_pivots(channels, train, layout, 5, seed=0).frames, choice.frames)
    subset = np.arange(30)
    assert set(select_pivots(channels, subset, layout, 3).frames) <= set(subset)


def test_pivot_errors_and_nearest_frames():
    layout = ChannelLayout(2)
    channels = layout.defaults(6)
    channels[:3, layout.index("head_yaw")] = 0.2
    with pytest.raises(PVPError, match="only 2 distinct"):
        select_pivots(channels, np.arange(6), layout, 3)
    with pytest.raises(PVPError, match="only 6 training frames"):
        select_pivots(channels, np.arange(6), layout, 7)
    assert len(select_pivots(channels, np.arange(6), layout, 1).frames) == 1
    channels[:, layout.index("head_yaw")] = np.arange(6) * 0.1
    features, names = pivot_features(channels, layout, reference=np.arange(4))
    assert names == ["pitch", "yaw"][1:] or names == ["yaw"]
    assert np.allclose(features[:4].mean(axis=0), 0) and not np.allclose(features[4:].mean(axis=0), 0)
    assert list(nearest_frames(channels, layout, np.array([0, 2]), np.array([1, 3, 5]), np.arange(4))) in \
        ([0, 2, 2], [2, 2, 2])


# --------------------------------------------------------------------------- masks

def test_eye_mouth_mask():
    landmarks = canonical_landmarks(512)
    mask = eye_mouth_mask(landmarks, 512)
    assert mask.shape == (512, 512) and mask.dtype == np.float32 and 0 <= mask.min() and mask.max() <= 1
    for region in (slice(36, 42), slice(42, 48), slice(48, 61)):
        centre = landmarks[region].mean(axis=0).round().astype(int)
        assert mask[centre[1], centre[0]] == pytest.approx(1.0, abs=1e-3)
    # Forehead, cheeks and background are outside it.
    assert mask[40, 256] == 0 and mask[500, 10] == 0 and mask[380, 60] < 0.01
    # The dilation reaches beyond the hull: 12 px right of the mouth corner (31x31 kernel = 15 px).
    corner = landmarks[54].round().astype(int)
    assert mask[corner[1], corner[0] + 12] > 0.5
    # Soft edge from the Gaussian blur.
    row = mask[int(landmarks[36:42, 1].mean())]
    assert ((row > 0.05) & (row < 0.95)).sum() >= 4
    # At another resolution the kernels scale: the mask covers the same fraction of the face.
    # (Odd kernel sizes round, so at 64 px the match is approximate; unscaled 512-px kernels would
    # swallow most of the face.)
    small = batch_masks(landmarks[None] * (64 / 512), 64, 64, MaskConfig())[0, 0]
    unscaled = batch_masks(landmarks[None] * (64 / 512), 64, 64, MaskConfig(reference_resolution=64))[0, 0]
    big_fraction = (mask > 0.5).mean()
    assert small.shape == (64, 64) and abs((small > 0.5).mean() - big_fraction) < 0.03
    assert (unscaled > 0.5).mean() > 3 * big_fraction
    # The mouth region follows the jaw.
    opened = eye_mouth_mask(canonical_landmarks(512, jaw_open=0.5), 512)
    assert (opened > 0.5).sum() > (mask > 0.5).sum()
    assert face_template().shape == (68, 2)


def test_tracker_output_is_a_fit_channel_input(tmp_path):
    """A DECA codes file (pose = global 3 + jaw 3, exp 50) feeds the fit like a channel file."""
    count = 12
    folder = _frames(tmp_path / "frames", count)
    rng = np.random.default_rng(1)
    yaw = np.linspace(-0.4, 0.4, count)
    global_pose = np.stack([np.zeros(count), yaw, np.zeros(count)], 1)  # axis-angle about +y = pure yaw
    jaw = np.stack([rng.uniform(0, 0.3, count), np.zeros(count), np.zeros(count)], 1)
    expression = rng.normal(size=(count, 50))
    deca = tmp_path / "deca_codes.npz"
    np.savez(deca, pose=np.concatenate([global_pose, jaw], 1).astype(np.float32), exp=expression.astype(np.float32),
             cam=np.tile([[9.0, 0.0, 0.0]], (count, 1)).astype(np.float32))
    inputs = inspect_inputs(folder, deca, LAYOUT, DataConfig())
    np.testing.assert_allclose(inputs.channels[:, LAYOUT.index("head_yaw")], yaw, atol=1e-5)
    np.testing.assert_allclose(inputs.channels[:, LAYOUT.slice("jaw")], jaw, atol=1e-6)
    np.testing.assert_allclose(inputs.channels[:, LAYOUT.slice("expression")], expression[:, :4], atol=1e-6)
    short = tmp_path / "short.npz"
    np.savez(short, pose=np.zeros((5, 6), np.float32), exp=np.zeros((5, 50), np.float32),
             cam=np.zeros((5, 3), np.float32))
    _fails(["short.npz", "5 frames", "12 frames"], inspect_inputs, folder, short, LAYOUT, DataConfig())
