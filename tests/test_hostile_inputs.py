"""Hostile and careless inputs, as a table: each row is one user mistake or one attack on one command.

A row names how to prepare the case (a function of the case folder), the command line, the exit code(s)
allowed, a fragment the one-line message must contain, and the files that must come out byte for byte
unchanged. Every case also checks what no command may ever do: crash with a traceback, print more than one
error line, leave files in the current directory, or write outside the folders the case allows
(`Case.may_write`). A new case is one row plus, when it needs one, a small `prepare_*` function.

Commands run in-process through the real Typer app (its one error handler included); the cases that could
end in a native crash run in a real subprocess.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gtacli.cli.app import app

# Small files of the sample tree are copied into each case (so a case may damage them); large ones are linked.
COPIED = ("preprocessed_datasets", "static_fits", "SYNTHETIC_DATA.json", "gmm_08.pkl")


@dataclass
class Case:
    name: str
    prepare: Callable[[Path, Path], Dict[str, str]]  # (data root, case dir) -> extra {placeholder: value}
    argv: Sequence[str]  # may use {root}, {case} and the placeholders prepare returns
    exit_codes: Tuple[int, ...]
    message: str  # a fragment of the error line (case-insensitive), or of check-layout's report
    unchanged: Sequence[str] = ()  # paths (with placeholders) whose bytes must not change
    must_not_exist: Sequence[str] = ()
    may_write: Sequence[str] = ()  # folders (with placeholders) where new files may appear
    env: Dict[str, str] = field(default_factory=dict)
    subprocess: bool = False
    slow: bool = False  # a real run (training, fetch with a server): the slow lane
    max_rss_mb: int = 0  # when set: runs in a subprocess whose peak memory must stay below this
    max_new_mb: int = 0  # when set: the new files (the cache included) hold at most this much


# ------------------------------------------------------------------------------------------------------
# case preparation


def case_tree(sample_tree: Path, case_dir: Path) -> Path:
    """A data root that reads like the sample tree: small files copied, large ones symlinked (read-only use)."""
    root = case_dir / "data"
    root.mkdir(parents=True)
    for entry in sample_tree.iterdir():
        if entry.name in COPIED:
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, root / entry.name)
        elif entry.name == "cache":
            (root / "cache").mkdir()
        else:
            (root / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return root


def nothing(root: Path, case: Path) -> Dict[str, str]:
    return {}


def _rewrite_npz(path: Path, change: Callable[[Dict[str, np.ndarray]], None]) -> None:
    with np.load(path, allow_pickle=True) as npz:  # our own generated fixture file, not user input
        members = {k: npz[k] for k in npz.files}
    change(members)
    np.savez_compressed(path, **members)


def pw3d_member_escaping_the_cache(root: Path, case: Path) -> Dict[str, str]:
    target = case / "escaped.npy"
    name = os.path.relpath(target, root / "cache" / "human_data")[: -len(".npy")]
    _rewrite_npz(
        root / "preprocessed_datasets" / "pw3d_test.npz", lambda m: m.__setitem__(name, np.arange(3))
    )
    return {"escaped": str(target)}


def _change_pw3d_smpl(root: Path, change: Callable[[Dict[str, np.ndarray]], None]) -> None:
    def rewrite(members: Dict[str, np.ndarray]) -> None:
        smpl = dict(members["smpl"].item())
        change(smpl)
        holder = np.empty((), dtype=object)
        holder[()] = smpl
        members["smpl"] = holder

    _rewrite_npz(root / "preprocessed_datasets" / "pw3d_test.npz", rewrite)


def pw3d_smpl_with_fewer_rows(root: Path, case: Path) -> Dict[str, str]:
    _change_pw3d_smpl(root, lambda smpl: smpl.update({k: np.asarray(v)[:1] for k, v in smpl.items()}))
    return {}


def pw3d_smpl_with_nan(root: Path, case: Path) -> Dict[str, str]:
    def poison(smpl: Dict[str, np.ndarray]) -> None:
        pose = np.array(smpl["body_pose"], dtype=np.float32)
        pose[0, 0, 0] = np.nan
        smpl["body_pose"] = pose

    _change_pw3d_smpl(root, poison)
    return {}


def pw3d_boxes_with_nan_and_inf(root: Path, case: Path) -> Dict[str, str]:
    def poison(members: Dict[str, np.ndarray]) -> None:
        boxes = np.array(members["bbox_xywh"], dtype=np.float32)
        boxes[0, 2], boxes[1, 3] = np.nan, np.inf
        members["bbox_xywh"] = boxes

    _rewrite_npz(root / "preprocessed_datasets" / "pw3d_test.npz", poison)
    return {}


def damaged_pw3d_images(root: Path, case: Path) -> Dict[str, str]:
    """Three of the 3DPW images: 0 bytes, a text file named .jpg, a JPEG cut in half (the folder copied)."""
    linked = root / "datasets"
    source = linked.resolve()
    linked.unlink()
    shutil.copytree(source, linked)
    images = sorted((linked / "pw3d").rglob("*.jpg"))
    images[0].write_bytes(b"")
    images[1].write_text("hello, this is not a picture\n")
    data = images[2].read_bytes()
    images[2].write_bytes(data[: len(data) // 2])
    return {}


def own_copies_of_models_and_images(root: Path, case: Path) -> Dict[str, str]:
    """body_models/ and datasets/ copied into the case (not linked), so a wrong write stays in the case."""
    for name in ("body_models", "datasets"):
        linked = root / name
        source = linked.resolve()
        linked.unlink()
        shutil.copytree(source, linked)
    return {}


def long_names(root: Path, case: Path) -> Dict[str, str]:
    return {"name300": "n" * 296, "name250": "m" * 246}


def pw3d_with_a_member_twice(root: Path, case: Path) -> Dict[str, str]:
    ann = root / "preprocessed_datasets" / "pw3d_test.npz"
    with zipfile.ZipFile(ann) as src:
        members = [(i.filename, src.read(i)) for i in src.infolist()]
    boxes = next(data for name, data in members if name == "bbox_xywh.npy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name: that is the point
        with zipfile.ZipFile(ann, "w") as out:
            for name, data in members + [("bbox_xywh.npy", boxes)]:
                out.writestr(name, data)
    return {}


def sample_tree_with_users_files_in_its_cache(root: Path, case: Path) -> Dict[str, str]:
    """A synthetic tree whose cache/ also holds files gtacli did not write (no cache manifest)."""
    from gtacli.sample.tree import build_sample_tree

    user_root = case / "u"
    build_sample_tree(user_root, size="tiny", seed=0)
    (user_root / "cache" / "human_data" / "spin_lsp_train-mine").mkdir(parents=True)
    (user_root / "cache" / "human_data" / "spin_lsp_train-mine" / "data.npy").write_bytes(b"mine")
    (user_root / "cache" / "notes.txt").write_text("mine")
    return {"user_root": str(user_root)}


def nan_keypoints_in_lsp(root: Path, case: Path) -> Dict[str, str]:
    def poison(members: Dict[str, np.ndarray]) -> None:
        key = "keypoints2d" if "keypoints2d" in members else "keypoints2d_smpl"
        kp = members[key].astype(np.float32)
        kp[0, :, :2] = np.nan
        members[key] = kp

    _rewrite_npz(root / "preprocessed_datasets" / "spin_lsp_train.npz", poison)
    return {}


def all_nan_static_fits(root: Path, case: Path) -> Dict[str, str]:
    path = root / "static_fits" / "lsp_fits.npy"
    fits = np.load(path)
    np.save(path, np.full_like(fits, np.nan))
    return {}


def nan_checkpoint(root: Path, case: Path) -> Dict[str, str]:
    raw = torch.load(root / "pretrained_models" / "spin_official.pth", weights_only=True)
    state = raw["state_dict"]
    key = next(k for k in state if k.startswith("head.fc1.weight"))
    state[key] = torch.full_like(state[key], float("nan"))
    path = case / "nan.pth"
    torch.save(raw, path)
    return {"ckpt": str(path), "image": str(_sample_image(root))}


def text_file_as_checkpoint(root: Path, case: Path) -> Dict[str, str]:
    path = case / "notes.pth"
    path.write_text("these are my notes, not weights\n")
    return {"ckpt": str(path)}


def hostile_smpl_pickle(root: Path, case: Path) -> Dict[str, str]:
    marker = case / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    smpl = root / "body_models"
    source = smpl.resolve()
    smpl.unlink()  # replace the linked folder by a copy whose neutral model is hostile
    shutil.copytree(source, smpl)
    (smpl / "smpl" / "SMPL_NEUTRAL.pkl").write_bytes(pickle.dumps({"v_template": Exploit()}, protocol=2))
    return {"marker": str(marker)}


def user_folder_with_results_json(root: Path, case: Path) -> Dict[str, str]:
    folder = case / "thesis"
    folder.mkdir()
    (folder / "results.json").write_text('{"mine": true}\n')
    (folder / "chapter1.tex").write_text("\\section{Introduction}\n")
    image = _sample_image(root)
    return {"out": str(folder), "image": str(image)}


def _sample_image(root: Path) -> Path:
    return next(p for p in sorted((root / "datasets" / "pw3d").rglob("*.jpg")))


def sample_image(root: Path, case: Path) -> Dict[str, str]:
    return {"image": str(_sample_image(root))}


def deeply_nested_bbox_file(root: Path, case: Path) -> Dict[str, str]:
    path = case / "boxes.json"
    path.write_text("[" * 50000 + "]" * 50000)
    return {"boxes": str(path), "image": str(_sample_image(root))}


def garbage_detector_weights(root: Path, case: Path) -> Dict[str, str]:
    from gtacli.assets.manifest import load_manifest

    dest = root / load_manifest().get("detector").dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(b"\x08\x07garbage, not an ONNX model" * 100)
    return {"image": str(_sample_image(root)), "weights": str(dest)}


def tiny_png(root: Path, case: Path) -> Dict[str, str]:
    import cv2

    path = case / "dot.png"
    cv2.imwrite(str(path), np.full((2, 2, 3), 128, np.uint8))
    return {"image": str(path)}


def used_work_dir(root: Path, case: Path) -> Dict[str, str]:
    work = case / "runs" / "ft"
    work.mkdir(parents=True)
    (work / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    (work / "latest.pth").write_bytes(b"an earlier run's checkpoint")
    return {"work": str(work)}


def empty_work_dir(root: Path, case: Path) -> Dict[str, str]:
    work = case / "runs" / "empty"
    work.mkdir(parents=True)
    return {"work": str(work)}


def licensed_smpl_in_a_foreign_root(root: Path, case: Path) -> Dict[str, str]:
    user_root = case / "user_data"
    smpl = user_root / "body_models" / "smpl"
    smpl.mkdir(parents=True)
    (smpl / "SMPL_NEUTRAL.pkl").write_bytes(b"licensed SMPL model bytes")
    return {"user_root": str(user_root), "smpl": str(smpl / "SMPL_NEUTRAL.pkl")}


def dataset_link_leaving_the_root(root: Path, case: Path) -> Dict[str, str]:
    user_root = case / "user_data"
    outside = case / "outside"
    outside.mkdir()
    user_root.mkdir()
    (user_root / "datasets").symlink_to(outside, target_is_directory=True)
    return {"user_root": str(user_root), "outside": str(outside)}


def fits_folder_linked_to_the_data_root(root: Path, case: Path) -> Dict[str, str]:
    """W/fits -> a folder of the user's fits (e.g. <data-root>/static_fits): --overwrite must not empty it."""
    theirs = case / "S"
    theirs.mkdir()
    (theirs / "lsp_fits.npy").write_bytes(b"the user's fits")
    work = case / "W"
    work.mkdir()
    (work / "fits").symlink_to(theirs, target_is_directory=True)
    return {"work": str(work), "theirs": str(theirs / "lsp_fits.npy")}


def users_own_files_in_the_work_dir(root: Path, case: Path) -> Dict[str, str]:
    """Files whose names look like a run's (but no run wrote them): --overwrite and the temp sweep keep them."""
    work = case / "W"
    (work / "tensorboard").mkdir(parents=True)
    (work / "fits").mkdir()
    (work / "epoch_best.pth").write_bytes(b"my best checkpoint")
    (work / "tensorboard" / "events.out.tfevents.1.mine").write_bytes(b"my events")
    (work / "fits" / "lsp_fits.npy").write_bytes(b"my fits")
    (work / ".notes.tmp-draft.txt").write_text("draft")
    (work / ".latest.tmp-1-0123abcd.pth").write_bytes(b"a temp name no recorded run wrote")
    return {"work": str(work)}


def users_recipe_in_the_work_dir(root: Path, case: Path) -> Dict[str, str]:
    work = case / "W"
    work.mkdir()
    (work / "recipe.json").write_text('{"mine": true}')
    return {"work": str(work)}


MiB = 1 << 20
ZERO_MiB = bytes(MiB)


def write_zip_of_zeros(path: Path, members: Sequence[Tuple[str, object]]) -> None:
    """A zip whose members are bytes (stored) or ("zeros", n, declared): n bytes of zeros deflated to ~1/1000,
    with `declared` as the directory's uncompressed size (a liar when it differs). Built block by block (a
    byte-aligned deflate block of 1 MiB of zeros, repeated), so a 1.5 GB bomb takes a moment and no memory.
    A fourth item is a prefix (an .npy header) put before the zeros."""
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = block.compress(bytes(MiB)) + block.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    central = []
    with open(path, "wb") as fp:
        for name, spec in members:
            offset = fp.tell()
            if isinstance(spec, bytes):
                method, chunks, crc, declared = 0, [spec], zlib.crc32(spec), len(spec)
            else:
                _, nbytes, declared, *prefix = spec  # type: ignore[misc]
                head_block = zlib.compressobj(9, zlib.DEFLATED, -15)
                start = (
                    [head_block.compress(prefix[0]) + head_block.flush(zlib.Z_FULL_FLUSH)] if prefix else []
                )
                method, chunks = 8, start + [one] * (nbytes // MiB) + [final]
                crc = zlib.crc32(prefix[0]) if prefix else 0
                for _ in range(nbytes // MiB):
                    crc = zlib.crc32(ZERO_MiB, crc)
                declared = declared + len(prefix[0]) if prefix else declared
            csize, raw = sum(map(len, chunks)), name.encode()
            head = (crc, csize, declared, len(raw))
            fp.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, *head, 0) + raw)
            for chunk in chunks:
                fp.write(chunk)
            central.append(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, *head, 0, 0, 0, 0, 0, offset
                )
                + raw
            )
        start = fp.tell()
        for entry in central:
            fp.write(entry)
        n = len(central)
        fp.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, fp.tell() - start, start, 0))


BOMB = 1500 * MiB  # inflated size of each bomb (the goal: peak memory below 1 GB)
SMPL_MEMBER = "smpl/models/basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl"


def smpl_zip_member_inflating_to_1_5_gb(root: Path, case: Path) -> Dict[str, str]:
    write_zip_of_zeros(case / "smpl.zip", [(SMPL_MEMBER, ("zeros", BOMB, BOMB))])
    return {"zip": str(case / "smpl.zip")}


def smpl_zip_member_declaring_1000_bytes(root: Path, case: Path) -> Dict[str, str]:
    write_zip_of_zeros(case / "smpl.zip", [(SMPL_MEMBER, ("zeros", BOMB, 1000))])
    return {"zip": str(case / "smpl.zip")}


def checkpoint_whose_storage_inflates(root: Path, case: Path) -> Dict[str, str]:
    """A torch.save zip with its one storage replaced by 1.5 GB of deflated zeros (torch stores them raw)."""
    buffer = io.BytesIO()
    torch.save({"backbone.conv1.weight": torch.zeros(4)}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src:
        members = [
            (i.filename, ("zeros", BOMB, BOMB) if i.filename.endswith("/data/0") else src.read(i))
            for i in src.infolist()
        ]
    write_zip_of_zeros(case / "model.pth", members)
    return {"ckpt": str(case / "model.pth")}


def big_pw3d_with_an_unused_2_gb_member(root: Path, case: Path) -> Dict[str, str]:
    """pw3d_test.npz above the cache threshold (a 64 MiB stored padding member) with an unused member that
    inflates to 2 GB: the cache must hold only what HumanData reads."""
    ann = root / "preprocessed_datasets" / "pw3d_test.npz"
    with zipfile.ZipFile(ann) as src:
        # (without the sample's `misc` dict of dicts, which the cache cannot hold: the file must be cached)
        members: List[Tuple[str, object]] = [
            (i.filename, src.read(i)) for i in src.infolist() if i.filename != "misc.npy"
        ]
    padding = io.BytesIO()
    np.save(padding, np.random.default_rng(0).integers(0, 255, 64 * MiB, dtype=np.uint8))
    members.append(("padding.npy", padding.getvalue()))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (2048 * MiB,)}
    )
    members.append(("unused_blob.npy", ("zeros", 2048 * MiB, 2048 * MiB, header.getvalue())))
    ann.unlink()
    write_zip_of_zeros(ann, members)
    return {}


def _endless_mirror(asset_name: str) -> Callable[[Path, Path], Dict[str, str]]:
    """A 127.0.0.1 mirror answering `asset_name` with an endless chunked body (no Content-Length). The server
    runs in a daemon thread until the test process ends."""

    def prepare(root: Path, case: Path) -> Dict[str, str]:
        sys.path.insert(0, str(Path(__file__).resolve().parent / "assets"))
        from fault_server import FaultServer

        from gtacli.assets.manifest import load_manifest

        server = FaultServer().__enter__()
        server.add(load_manifest().get(asset_name).url, b"0123456789abcdef", sticky_fault=("endless",))
        return {"mirror": server.url}

    return prepare


# ------------------------------------------------------------------------------------------------------
# the table

R = "--data-root"
DEMO = ["demo", "{image}", "--checkpoint", "{root}/pretrained_models/spin_official.pth", R, "{root}"]
EVAL = ["eval", R, "{root}", "--checkpoint", "{root}/pretrained_models/spin_official.pth", "--limit", "4"]
EVAL += ["--device", "cpu"]
OFFLINE_FETCH = {"GTACLI_MIRROR": "", "GTACLI_FETCH_RETRIES": "1", "GTACLI_FETCH_BACKOFF_S": "0.01"}
FINETUNE = ["finetune", R, "{root}", "--device", "cpu", "--max-steps", "1", "--batch-size", "1"]
FINETUNE += ["--workers", "0", "--num-data", "2", "--set", "eval_each_epoch=false"]
CASES: List[Case] = [
    Case(
        "humandata member name escapes the cache",
        pw3d_member_escaping_the_cache,
        ["check-layout", "--for", "eval-pw3d", R, "{root}"],
        (1,),
        "not a genuine HumanData file",
        must_not_exist=["{escaped}"],
    ),
    Case(
        "nan keypoints in a training annotation are reported",
        nan_keypoints_in_lsp,
        ["check-layout", "--for", "finetune", R, "{root}"],
        (1,),
        "",
    ),
    Case(
        "all-nan static fits are reported",
        all_nan_static_fits,
        ["check-layout", "--for", "finetune", R, "{root}"],
        (1,),
        "",
    ),
    Case(
        "eval on ground-truth SMPL with fewer rows than frames",
        pw3d_smpl_with_fewer_rows,
        EVAL,
        (1,),
        "smpl.betas has shape (1, 10)",
    ),
    Case(
        "check-layout reports NaN in the ground-truth SMPL",
        pw3d_smpl_with_nan,
        ["check-layout", "--for", "eval-pw3d", R, "{root}", "--json"],
        (1,),
        "NaN/inf in the ground-truth smpl.body_pose",
    ),
    Case(
        "eval refuses NaN in the ground-truth SMPL",
        pw3d_smpl_with_nan,
        EVAL,
        (1,),
        "NaN/inf in the ground-truth smpl.body_pose",
    ),
    Case(
        "eval refuses NaN/inf boxes (as check-layout does)",
        pw3d_boxes_with_nan_and_inf,
        EVAL,
        (1,),
        "NaN/inf values in 'bbox_xywh'",
    ),
    Case(
        "check-layout --deep on empty, text and truncated images",
        damaged_pw3d_images,
        ["check-layout", "--for", "eval-pw3d", R, "{root}", "--deep", "--json"],
        (1,),
        "3 of all",
    ),
    Case(
        "eval --save-predictions --force onto the SMPL mean parameters",
        own_copies_of_models_and_images,
        EVAL + ["--save-predictions", "{root}/body_models/smpl_mean_params.npz", "--force"],
        (2,),
        "which this evaluation reads",
        unchanged=["{root}/body_models/smpl_mean_params.npz"],
    ),
    Case(
        "eval --save-predictions into the image folder",
        own_copies_of_models_and_images,
        EVAL + ["--save-predictions", "{root}/datasets/pw3d/predictions.npz"],
        (2,),
        "which this evaluation reads",
        must_not_exist=["{root}/datasets/pw3d/predictions.npz"],
    ),
    Case(
        "eval --save-predictions with a 300-character name",
        long_names,
        EVAL + ["--save-predictions", "{case}/{name300}.npz"],
        (2,),
        "longer than the file system allows",
    ),
    Case(
        "fit --output with a valid 250-character name in a new folder",
        long_names,
        ["fit", R, "{root}", "--dataset", "lsp", "--limit", "1", "--iterations", "1", "--device", "cpu"]
        + ["--output", "{case}/new/{name250}.npy"],
        (0,),
        "",
        may_write=["{case}/new"],
    ),
    Case(
        "fit --output with a 300-character name leaves no empty folders",
        long_names,
        ["fit", R, "{root}", "--dataset", "lsp", "--limit", "1", "--iterations", "1", "--device", "cpu"]
        + ["--output", "{case}/new/sub/{name300}.npy"],
        (1, 2),
        "longer than the file system allows",
        must_not_exist=["{case}/new"],
    ),
    Case(
        "an annotation holding one member twice",
        pw3d_with_a_member_twice,
        ["check-layout", "--for", "eval-pw3d", R, "{root}", "--json"],
        (1,),
        "holds member 'bbox_xywh' twice",
    ),
    Case(
        "nan checkpoint weights in eval",
        nan_checkpoint,
        ["eval", R, "{root}", "--checkpoint", "{ckpt}", "--limit", "2", "--device", "cpu"],
        (1,),
        "nan",
    ),
    Case(
        "nan checkpoint weights in the demo",
        nan_checkpoint,
        ["demo", "{image}", "--checkpoint", "{ckpt}", R, "{root}", "-o", "{case}/out", "--device", "cpu"],
        (1,),
        "nan",
        must_not_exist=["{case}/out"],
    ),
    Case(
        "a text file passed as a checkpoint",
        text_file_as_checkpoint,
        ["eval", R, "{root}", "--checkpoint", "{ckpt}", "--limit", "2", "--device", "cpu"],
        (1,),
        "notes.pth",
        unchanged=["{ckpt}"],
    ),
    Case(
        "a pickle that runs code placed as the SMPL model",
        hostile_smpl_pickle,
        ["check-layout", "--for", "eval-pw3d", R, "{root}"],
        (1,),
        "",
        must_not_exist=["{marker}"],
    ),
    Case(
        "demo output folder holding the user's files",
        user_folder_with_results_json,
        DEMO + ["-o", "{out}", "--bbox", "10,10,60,120", "--device", "cpu", "--no-render"],
        (1, 2),
        "thesis",
        unchanged=["{out}/results.json", "{out}/chapter1.tex"],
    ),
    Case(
        "a nested bbox file",
        deeply_nested_bbox_file,
        DEMO + ["-o", "{case}/out", "--bbox-file", "{boxes}", "--device", "cpu"],
        (1, 2),
        "boxes.json",
        must_not_exist=["{case}/out"],
    ),
    Case(
        "a box of 1e-9 pixels",
        sample_image,
        DEMO + ["-o", "{case}/out", "--bbox", "5,5,1e-9,1e-9", "--device", "cpu"],
        (1, 2),
        "bbox",
        must_not_exist=["{case}/out"],
    ),
    Case(
        "detector weights that are not the pinned file",
        garbage_detector_weights,
        DEMO + ["-o", "{case}/out", "--detector", "yolox", "--device", "cpu"],
        (1,),
        "gtacli fetch detector --force",
        unchanged=["{weights}"],
        must_not_exist=["{case}/out"],
    ),
    Case(
        "an unknown detector name",
        sample_image,
        DEMO + ["-o", "{case}/out", "--detector", "rcnn"],
        (2,),
        "rcnn",
        must_not_exist=["{case}/out"],
    ),
    Case(
        "a 2x2 image in the demo (native crash before)",
        tiny_png,
        DEMO + ["-o", "{case}/out", "--device", "cpu", "--no-render"],
        (0,),
        "",
        may_write=["{case}/out"],
        subprocess=True,
    ),
    Case(
        "finetune into a used work dir without --resume",
        used_work_dir,
        ["finetune", R, "{root}", "--work-dir", "{work}", "--device", "cpu"],
        (2,),
        "--resume",
        unchanged=["{work}/metrics.jsonl", "{work}/latest.pth"],
    ),
    Case(
        "finetune --overwrite with fits/ linked to the user's fits",
        fits_folder_linked_to_the_data_root,
        FINETUNE + ["--work-dir", "{work}", "--overwrite"],
        (2,),
        "symlink",
        unchanged=["{theirs}"],
    ),
    Case(
        "finetune --overwrite beside the user's own run-like files",
        users_own_files_in_the_work_dir,
        FINETUNE + ["--work-dir", "{work}", "--overwrite"],
        (0,),
        "",
        unchanged=[
            "{work}/epoch_best.pth",
            "{work}/tensorboard/events.out.tfevents.1.mine",
            "{work}/.notes.tmp-draft.txt",
            "{work}/.latest.tmp-1-0123abcd.pth",
        ],
        may_write=["{work}"],
        slow=True,
    ),
    Case(
        "finetune --overwrite onto the user's own recipe.json",
        users_recipe_in_the_work_dir,
        FINETUNE + ["--work-dir", "{work}", "--overwrite"],
        (2,),
        "recipe.json",
        unchanged=["{work}/recipe.json"],
    ),
    Case(
        "finetune --lr nan",
        empty_work_dir,
        ["finetune", R, "{root}", "--work-dir", "{work}", "--lr", "nan", "--device", "cpu"],
        (2,),
        "lr must be a finite number",
    ),
    Case(
        "finetune with an unknown recipe key",
        empty_work_dir,
        ["finetune", R, "{root}", "--work-dir", "{work}", "--set", "losses.no_such_weight=1"],
        (2,),
        "no_such_weight",
    ),
    Case(
        "resume from a work dir with no checkpoint",
        empty_work_dir,
        ["finetune", R, "{root}", "--work-dir", "{work}", "--resume", "--device", "cpu"],
        (1, 2),
        "",
    ),
    Case(
        "eval --save-predictions onto the annotation itself",
        nothing,
        ["eval", R, "{root}", "--checkpoint", "{root}/pretrained_models/spin_official.pth"]
        + ["--save-predictions", "{root}/preprocessed_datasets/pw3d_test.npz", "--force", "--limit", "2"],
        (1, 2),
        "pw3d_test.npz",
        unchanged=["{root}/preprocessed_datasets/pw3d_test.npz"],
    ),
    Case(
        "fit on nan keypoints blames the annotation",
        nan_keypoints_in_lsp,
        ["fit", R, "{root}", "--dataset", "lsp", "--limit", "1", "--output", "{case}/fits.npy"]
        + ["--iterations", "2", "--device", "cpu"],
        (0, 1),
        "",
        unchanged=["{root}/static_fits/lsp_fits.npy"],
        may_write=["{case}"],
    ),
    Case(
        "sample-data --force over a licensed SMPL file",
        licensed_smpl_in_a_foreign_root,
        ["sample-data", R, "{user_root}", "--force", "--size", "tiny"],
        (1, 2),
        "SMPL_NEUTRAL.pkl",
        unchanged=["{smpl}"],
    ),
    Case(
        "sample-data through a symlink that leaves the root",
        dataset_link_leaving_the_root,
        ["sample-data", R, "{user_root}", "--force", "--size", "tiny"],
        (1, 2),
        "datasets",
        must_not_exist=["{outside}/pw3d", "{outside}/lsp", "{outside}/gta"],
    ),
    Case(
        "a mirror streaming without end (size in the manifest)",
        _endless_mirror("gmm_08"),
        ["fetch", "gmm_08", "--mirror", "{mirror}", R, "{case}/fresh"],
        (1,),
        "more than the expected 839127 bytes",
        must_not_exist=["{case}/fresh/gmm_08.pkl", "{case}/fresh/.gtacli-locks"],
        env=OFFLINE_FETCH,
    ),
    Case(
        "a mirror streaming without end (size unknown: the kind's cap)",
        _endless_mirror("resnet50_spin_gta_ft_log"),
        ["fetch", "resnet50_spin_gta_ft_log", "--mirror", "{mirror}", R, "{case}/fresh"],
        (1,),
        "more than the expected 67108864 bytes",
        must_not_exist=["{case}/fresh/.gtacli-locks", "{case}/fresh/models"],
        env=OFFLINE_FETCH,
        slow=True,
    ),
    Case(
        "a 70 MB annotation with an unused member inflating to 2 GB",
        big_pw3d_with_an_unused_2_gb_member,
        # the torch engine: the onnxruntime one exports the network (its own ~1 GB peak and ~100 MB cache)
        ["eval", R, "{root}", "--checkpoint", "{root}/pretrained_models/spin_official.pth", "--limit", "2"]
        + ["--device", "cpu", "--engine", "torch"],
        (0,),
        "",
        max_rss_mb=1000,
        max_new_mb=100,
    ),
    Case(
        "an SMPL zip whose 1.5 MB member inflates to 1.5 GB",
        smpl_zip_member_inflating_to_1_5_gb,
        ["fetch", "--smpl-from", "{zip}", R, "{case}/fresh"],
        (1,),
        "implausibly large",
        must_not_exist=["{case}/fresh/body_models"],
        max_rss_mb=1000,
    ),
    Case(
        "an SMPL zip member declaring 1000 bytes that inflates to 1.5 GB",
        smpl_zip_member_declaring_1000_bytes,
        ["fetch", "--smpl-from", "{zip}", R, "{case}/fresh"],
        (1,),
        "cannot be read",
        must_not_exist=["{case}/fresh/body_models"],
        max_rss_mb=1000,
    ),
    Case(
        "a 1.5 MB checkpoint whose storage inflates to 1.5 GB",
        checkpoint_whose_storage_inflates,
        ["eval", R, "{root}", "--checkpoint", "{ckpt}", "--limit", "2", "--device", "cpu"],
        (1,),
        "not a checkpoint torch wrote",
        max_rss_mb=1000,
    ),
    Case(
        "sample-data --force keeps the user's files in the cache folder",
        sample_tree_with_users_files_in_its_cache,
        ["sample-data", R, "{user_root}", "--force", "--size", "tiny"],
        (0,),
        "",
        unchanged=[
            "{user_root}/cache/notes.txt",
            "{user_root}/cache/human_data/spin_lsp_train-mine/data.npy",
        ],
        may_write=["{user_root}"],
        slow=True,
    ),
    Case(
        "a bad retry count in the environment",
        nothing,
        ["fetch", "gmm_08", R, "{case}/fresh", "--dry-run"],
        (2,),
        "GTACLI_FETCH_RETRIES",
        env={"GTACLI_FETCH_RETRIES": "many"},
    ),
]


# Linux carries a process's peak RSS across exec, so a command forked straight from this (large) test process
# would report this process's size: a small Python process starts the command and reports its child's peak.
_MEASURE = (
    "import os, subprocess, sys\n"
    "proc = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(proc.pid, 0)\n"
    "proc.returncode = 0\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def _run_measured(argv: List[str], cwd: Path, env: Dict[str, str], tmp: Path) -> Tuple[int, str, str, float]:
    """Run a command; its exit code, stdout, stderr and peak resident memory (MB, from wait4's rusage)."""
    out, err, peak = tmp / "stdout.txt", tmp / "stderr.txt", tmp / "peak_kb.txt"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(peak), *argv],
            cwd=cwd,
            env=env,
            stdout=fo,
            stderr=fe,
            timeout=600,
        )
    return proc.returncode, out.read_text(), err.read_text(), int(peak.read_text()) / 1024


def _fill(text: str, values: Dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(folder: Path) -> set:
    return {p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def _param(case: Case):
    """Cases that need a real subprocess (possible native crash) belong to the slow lane."""
    slow = case.subprocess or case.slow or case.max_rss_mb or case.max_new_mb
    return pytest.param(case, id=case.name, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_hostile_and_careless_inputs(case: Case, sample_tree: Path, tmp_path: Path, monkeypatch) -> None:
    case_dir = tmp_path / "case"
    root = case_tree(sample_tree, case_dir)
    values = {"root": str(root), "case": str(case_dir)}
    values.update(case.prepare(root, case_dir))
    argv = [_fill(a, values) for a in case.argv]
    protected = {Path(_fill(p, values)): None for p in case.unchanged}
    for path in protected:
        protected[path] = _digest(path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = _files(case_dir)
    sample_before = {p: p.stat().st_mtime_ns for p in _files(sample_tree)}

    if case.subprocess or case.max_rss_mb:
        env = {**os.environ, **case.env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        code, stdout, stderr, peak_mb = _run_measured(
            [sys.executable, "-m", "gtacli", *argv], cwd, env, tmp_path
        )
        if case.max_rss_mb:
            assert peak_mb < case.max_rss_mb, f"peak memory {peak_mb:.0f} MB"
    else:
        for key, value in case.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(cwd)
        result = CliRunner().invoke(app, argv)
        code, stderr, stdout = result.exit_code, result.stderr, result.stdout
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
            f"uncaught {result.exception!r}"
        )

    assert code in case.exit_codes, f"exit {code}; stderr: {stderr[-800:]}"
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) <= 1, errors
    # the message: the one error line, else a report's verdict (check-layout) or click's usage box
    said = errors[0] if errors else stdout + stderr
    if code != 0:
        assert said.strip(), f"a failure that says nothing; stderr: {stderr[-800:]}"
    assert case.message.lower() in said.lower(), f"{case.message!r} not in: {said[-800:]}"
    for path, digest in protected.items():
        assert path.exists() and _digest(path) == digest, f"{path} was changed"
    for path in case.must_not_exist:
        assert not Path(_fill(path, values)).exists(), f"{path} was written"
    assert not any(cwd.iterdir()), f"files left in the current directory: {list(cwd.iterdir())}"
    if case.max_new_mb:
        written = sum(p.stat().st_size for p in _files(case_dir) - before if p.is_file())
        assert written < case.max_new_mb * MiB, f"{written / MiB:.0f} MB written"
    allowed = [Path(_fill(p, values)) for p in case.may_write] + [root / "cache"]
    new = {p for p in _files(case_dir) - before if not any(a == p or a in p.parents for a in allowed)}
    if code != 0:  # a refused or failed command leaves nothing behind (no temp names, no partial outputs)
        assert not new, f"a failed command left files: {sorted(map(str, new))[:5]}"
    assert {p: p.stat().st_mtime_ns for p in _files(sample_tree)} == sample_before, (
        "the shared tree was touched"
    )


def test_the_table_covers_every_command_that_reads_user_files() -> None:
    commands = {case.argv[0] for case in CASES}
    assert {"check-layout", "eval", "demo", "finetune", "fit", "sample-data", "fetch"} <= commands
