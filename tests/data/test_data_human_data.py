"""HumanData reading (files laid out as mmhuman3d writes them, built here by hand), writing, cache (docs/reproduction.md §2)."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest

from gtacli.data.human_data import HumanData, cache_folder, write_human_data
from gtacli.errors import BadFileError, UnsafeFileError

# docs/reproduction.md §3.3, typed from that table (not imported) so the test checks the table too.
SMPL49_SLOTS = [153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172,
                173, 174, 175, 176, 177, 8, 5, 144, 145, 4, 7, 21, 19, 17, 16, 18, 20, 146, 147, 148, 149, 150,
                151, 152, 55, 57, 56, 59, 58]  # fmt: skip
GTA_SLOTS = sorted(SMPL49_SLOTS[25:])  # the 24 "GT" joints a GTA-style file keeps (docs/reproduction.md §2.6)


def _full_keypoints(n: int, dim: int, mask: np.ndarray, seed: int) -> np.ndarray:
    """(n,190,dim): coordinates encode (frame, slot) so a wrong column shows; conf random in (0,1]; 0 off-mask."""
    rng = np.random.default_rng(seed)
    kp = np.zeros((n, 190, dim), np.float32)
    frames, slots = np.meshgrid(np.arange(n), np.arange(190), indexing="ij")
    kp[..., 0] = frames * 1000 + slots
    kp[..., 1] = -slots
    kp[..., -1] = rng.uniform(0.1, 1.0, size=(n, 190))
    return kp * mask[None, :, None]


def _mmhuman3d_style_file(path, n=6, legacy_header=False, box_columns=4):
    """What mmhuman3d's HumanData.dump produces, written with np.savez_compressed directly."""
    mask = np.zeros(190, np.uint8)
    mask[GTA_SLOTS] = 1
    kp2d = _full_keypoints(n, 3, mask, 0)
    kp3d = _full_keypoints(n, 4, mask, 1)
    smpl = np.empty((), dtype=object)
    smpl[()] = {"body_pose": np.arange(n * 69, dtype=np.float32).reshape(n, 23, 3),
                "global_orient": np.ones((n, 3), np.float32), "betas": np.full((n, 10), 0.5, np.float32)}  # fmt: skip
    meta = np.empty((), dtype=object)
    meta[()] = {"gender": ["m", "f"] * (n // 2)}
    header = {"__temporal_len__": n} if legacy_header else {"__data_len__": n}
    np.savez_compressed(
        path,
        __key_strict__=False,
        __keypoints_compressed__=True,
        **header,
        image_path=[f"images/seq_{i // 3:08d}/{i:08d}.jpeg" for i in range(n)],
        bbox_xywh=np.arange(n * box_columns, dtype=np.float32).reshape(n, box_columns),
        config="gta",
        keypoints2d=kp2d[:, mask == 1],
        keypoints2d_mask=mask,
        keypoints3d=kp3d[:, mask == 1],
        keypoints3d_mask=mask,
        smpl=smpl,
        meta=meta,
    )
    return kp2d, kp3d, mask


def test_reads_a_file_written_like_mmhuman3d(tmp_path):
    path = tmp_path / "gta.npz"
    kp2d, kp3d, mask = _mmhuman3d_style_file(path)
    hd = HumanData.load(path)
    assert len(hd) == 6
    assert hd.keypoints_compressed and not hd.key_strict
    assert hd["config"] == "gta"
    assert hd.image_paths([4]) == ["images/seq_00000001/00000004.jpeg"]
    assert np.array_equal(hd["keypoints2d"], kp2d)  # decompressed to all 190 slots
    assert np.array_equal(hd.keypoints("keypoints3d", slice(2, 4)), kp3d[2:4])
    boxes = hd.bbox_xywh()
    assert boxes.shape == (6, 5) and np.all(boxes[:, 4] == 1.0)  # (N,4) padded with score 1
    assert np.array_equal(boxes[:, :4], np.arange(24, dtype=np.float32).reshape(6, 4))
    assert hd.smpl([1])["body_pose"].shape == (1, 23, 3)
    assert hd.meta()["gender"][:2] == ["m", "f"]


def test_smpl49_conversion_follows_the_documented_table(tmp_path):
    path = tmp_path / "gta.npz"
    kp2d, kp3d, _ = _mmhuman3d_style_file(path)
    hd = HumanData.load(path)
    k49 = hd.keypoints2d_smpl49()
    assert k49.shape == (6, 49, 3)
    assert np.all(k49[:, :25] == 0)  # OpenPose slots are absent from a GTA file
    for j in range(25, 49):  # the x coordinate encodes frame*1000 + slot
        assert np.array_equal(k49[:, j, 0], np.arange(6) * 1000 + SMPL49_SLOTS[j]), j
    assert np.array_equal(k49[..., 2], kp2d[:, SMPL49_SLOTS, 2])  # confidence copied unchanged
    k49_3d = hd.keypoints3d_smpl49(np.array([5, 0]))
    assert k49_3d.shape == (2, 49, 4)
    assert np.array_equal(k49_3d, kp3d[[5, 0]][:, SMPL49_SLOTS])


def test_legacy_temporal_len_header(tmp_path):
    path = tmp_path / "gta_human_4x.npz"
    _mmhuman3d_style_file(path, n=4, legacy_header=True)
    hd = HumanData.load(path)
    assert len(hd) == 4  # from bbox_xywh.shape[0]
    assert "__temporal_len__" not in hd.keys()


def test_missing_keypoints_give_zeros(tmp_path):
    path = tmp_path / "pw3d_test.npz"
    write_human_data(path, {"image_path": ["a/0.jpg", "a/1.jpg"], "bbox_xywh": np.zeros((2, 5))})
    hd = HumanData.load(path)
    assert hd.keypoints2d_smpl49().shape == (2, 49, 3) and not hd.keypoints2d_smpl49().any()
    assert hd.keypoints3d_smpl49(slice(0, 1)).shape == (1, 49, 4)


def test_write_produces_mmhuman3d_on_disk_format(tmp_path):
    n = 4
    mask = np.zeros(190, np.uint8)
    mask[GTA_SLOTS] = 1
    kp2d = _full_keypoints(n, 3, mask, 3)
    fields = {"image_path": [f"imageFiles/s/{i}.jpg" for i in range(n)], "bbox_xywh": np.ones((n, 5), np.float32),
              "keypoints2d": kp2d, "keypoints2d_mask": mask, "config": "pw3d",
              "smpl": {"betas": np.zeros((n, 10), np.float32)}, "meta": {"gender": ["m", "f", "f", "m"]}}  # fmt: skip
    path = tmp_path / "out.npz"
    write_human_data(path, fields)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]
    with zipfile.ZipFile(path) as archive:
        names = sorted(archive.namelist())
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in archive.infolist())

        def member(name):
            with archive.open(name + ".npy") as fp:
                return np.lib.format.read_array(io.BytesIO(fp.read()), allow_pickle=False)

        assert names == sorted(
            f"{k}.npy" for k in ["__data_len__", "__key_strict__", "__keypoints_compressed__", *fields]
        )
        assert int(member("__data_len__")) == n and bool(member("__keypoints_compressed__"))
        assert member("keypoints2d").shape == (n, 24, 3)  # only the mask==1 columns
        assert np.array_equal(member("keypoints2d"), kp2d[:, mask == 1])
        assert member("image_path").dtype.kind == "U"  # a list of str is stored as numpy strings
        with archive.open("smpl.npy") as fp:  # the dict is a 0-d object array
            assert np.lib.format.read_magic(fp) == (1, 0)
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        assert shape == () and dtype.hasobject
    back = HumanData.load(path)
    assert np.array_equal(back["keypoints2d"], kp2d)
    assert back.meta()["gender"] == ["m", "f", "f", "m"] and back["config"] == "pw3d"


def test_cache_memory_maps_and_matches(tmp_path):
    root = tmp_path / "data"
    ann = root / "preprocessed_datasets" / "gta_human_4x.npz"
    ann.parent.mkdir(parents=True)
    kp2d, _, _ = _mmhuman3d_style_file(ann, n=8, legacy_header=True)
    cached = HumanData.load(ann, cache_dir=root / "cache", use_cache=True)
    folder = cache_folder(ann, root / "cache")
    assert folder.is_dir() and folder.parent == root / "cache" / "human_data"
    assert isinstance(cached.rows("keypoints2d"), np.memmap)
    assert isinstance(cached.smpl()["body_pose"], np.memmap)
    plain = HumanData.load(ann, use_cache=False)
    assert len(cached) == len(plain) == 8
    assert np.array_equal(cached.keypoints2d_smpl49(slice(0, 3)), plain.keypoints2d_smpl49(slice(0, 3)))
    assert np.array_equal(cached["keypoints2d"], kp2d)
    assert cached.image_paths() == plain.image_paths() and cached["config"] == "gta"
    assert cached.meta()["gender"] == plain.meta()["gender"]
    # a changed file gets a new cache folder (keyed by size and mtime), never the stale one
    _mmhuman3d_style_file(ann, n=10, legacy_header=True)
    os.utime(ann, ns=(1, 2))
    assert len(HumanData.load(ann, cache_dir=root / "cache", use_cache=True)) == 10
    assert len(list((root / "cache" / "human_data").iterdir())) == 2


def test_truncated_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "pw3d_test.npz"
    _mmhuman3d_style_file(path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(BadFileError) as info:
        HumanData.load(path)["smpl"]
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_object_member_with_code_is_refused(tmp_path):
    import datetime

    path = tmp_path / "evil.npz"
    meta = np.empty((), dtype=object)
    meta[()] = {"gender": datetime.date(2020, 1, 1)}  # pickles a reference to datetime.date
    np.savez_compressed(path, __data_len__=1, image_path=["a.jpg"], bbox_xywh=np.zeros((1, 5)), meta=meta)
    with pytest.raises(UnsafeFileError):
        HumanData.load(path).meta()


def test_corrupt_member_while_building_the_cache_is_one_line(tmp_path):
    path = tmp_path / "gta.npz"
    _mmhuman3d_style_file(path, n=200)
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 64] = bytes(64)  # damage a deflate stream, keep the zip directory
    path.write_bytes(bytes(data))
    with pytest.raises(BadFileError) as info:
        HumanData.load(path, cache_dir=tmp_path / "cache", use_cache=True)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    leftovers = list((tmp_path / "cache").rglob("*")) if (tmp_path / "cache").exists() else []
    assert not [p for p in leftovers if p.is_file()]  # no half-built cache


@pytest.mark.parametrize("as_array", [False, True])
@pytest.mark.parametrize("use_cache", [False, True])
def test_meta_gender_list_or_string_array_gives_mmhuman3d_genders(tmp_path, as_array, use_cache):
    # pw3d_test.npz keeps meta.gender as a list of 'm'/'f'; re-saved files may hold a numpy string array.
    # Both, cached or not (100 rows: too long to stay JSON in the cache), must give 'm' -> male, else female.
    from gtacli.evaluate.protocols import gendered_names

    n = 100
    genders = ["m" if i % 3 else "f" for i in range(n)]
    meta = np.empty((), dtype=object)
    meta[()] = {"gender": np.array(genders) if as_array else genders}
    root = tmp_path / "data"
    ann = root / "preprocessed_datasets" / "pw3d_test.npz"
    ann.parent.mkdir(parents=True)
    np.savez_compressed(
        ann, __data_len__=n, __key_strict__=False, __keypoints_compressed__=False,
        image_path=[f"imageFiles/s/image_{i:05d}.jpg" for i in range(n)], bbox_xywh=np.ones((n, 5)), meta=meta,
    )  # fmt: skip
    data = HumanData.load(ann, cache_dir=root / "cache", use_cache=use_cache)
    rows = np.arange(3, n)
    got = gendered_names(np.asarray(data.meta()["gender"])[rows])
    assert got == ["male" if i % 3 else "female" for i in rows]


def _npz_with_members(path, members):
    """An npz written member by member (np.savez cannot spell hostile names)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, value in members.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(value), allow_pickle=False)
            zf.writestr(name, buf.getvalue())


@pytest.mark.parametrize("member", ["../../../../escaped_x.npy", "/tmp/gtacli_abs_escape_x.npy", "a/b.npy"])
def test_cache_refuses_member_names_that_leave_the_cache(tmp_path, member):
    root = tmp_path / "data"
    ann = root / "preprocessed_datasets" / "big.npz"
    ann.parent.mkdir(parents=True)
    _npz_with_members(
        ann, {"__data_len__.npy": np.array(2), "bbox_xywh.npy": np.ones((2, 4)), member: np.full(4, 7.0)}
    )
    before = set(tmp_path.rglob("*"))
    with pytest.raises(UnsafeFileError, match="not a plain name") as info:
        HumanData.load(ann, cache_dir=root / "cache", use_cache=True)
    assert "\n" not in str(info.value) and str(ann) in str(info.value)
    assert set(tmp_path.rglob("*")) - before <= {root / "cache", root / "cache" / "human_data"}
    assert not list(tmp_path.parent.glob("escaped_x*")) and not os.path.exists("/tmp/gtacli_abs_escape_x.npy")


def test_cache_refuses_hostile_names_inside_dict_members(tmp_path):
    root = tmp_path / "data"
    ann = root / "preprocessed_datasets" / "big.npz"
    ann.parent.mkdir(parents=True)
    smpl = np.empty((), dtype=object)
    smpl[()] = {"../../../../escaped_sub": np.zeros((2, 10))}
    np.savez_compressed(ann, __data_len__=2, bbox_xywh=np.ones((2, 4)), smpl=smpl)
    with pytest.raises(UnsafeFileError, match="not a plain name"):
        HumanData.load(ann, cache_dir=root / "cache", use_cache=True)
    assert not list(tmp_path.parent.rglob("escaped_sub*"))


def test_cache_threshold_parameterless_path_also_checks_names(tmp_path, monkeypatch):
    """The size rule (files >= CACHE_MIN_BYTES) leads to the same check: lowered here to reach it cheaply."""
    from gtacli.data import human_data

    root = tmp_path / "data"
    ann = root / "preprocessed_datasets" / "pw3d_test.npz"
    ann.parent.mkdir(parents=True)
    _npz_with_members(ann, {"__data_len__.npy": np.array(1), "../../../x.npy": np.zeros(3)})
    monkeypatch.setattr(human_data, "CACHE_MIN_BYTES", 1)
    with pytest.raises(UnsafeFileError):
        HumanData.load(ann)  # default cache root: <data root>/cache
    assert not (tmp_path / "x.npy").exists()


def test_dict_nested_in_a_dict_falls_back_to_the_npz(tmp_path):
    root = tmp_path / "data"
    ann = root / "preprocessed_datasets" / "nested.npz"
    ann.parent.mkdir(parents=True)
    meta = np.empty((), dtype=object)
    meta[()] = {"gender": ["m", "f"], "extra": {"inner": np.arange(3)}}
    np.savez_compressed(ann, __data_len__=2, bbox_xywh=np.ones((2, 4)), meta=meta)
    hd = HumanData.load(ann, cache_dir=root / "cache", use_cache=True)
    assert len(hd) == 2 and hd.meta()["gender"] == ["m", "f"]
    assert np.array_equal(hd.meta()["extra"]["inner"], np.arange(3))
    assert not list((root / "cache").rglob("manifest.json"))  # no half cache left behind


@pytest.mark.parametrize(
    "fields, member",
    [
        ({"bbox_xywh": np.ones((3, 4)), "keypoints2d": np.zeros((4, 190, 3))}, "bbox_xywh"),  # boxes short
        ({"bbox_xywh": np.ones((4, 4)), "keypoints2d": np.zeros((4, 17, 3))}, "keypoints2d"),  # wrong K
        ({"bbox_xywh": np.ones((4, 4)), "keypoints3d": np.zeros((4, 190, 3))}, "keypoints3d"),  # no conf
        ({"bbox_xywh": np.ones((4, 3))}, "bbox_xywh"),
        ({"image_path": np.array(["a.jpg"] * 3)}, "image_path"),
    ],
)
def test_wrong_shapes_are_one_line_at_load_naming_file_and_member(tmp_path, fields, member):
    path = tmp_path / "bad.npz"
    np.savez_compressed(path, __data_len__=4, **fields)
    with pytest.raises(BadFileError) as info:
        HumanData.load(path)
    text = str(info.value)
    assert f"'{member}'" in text and str(path) in text and "\n" not in text
