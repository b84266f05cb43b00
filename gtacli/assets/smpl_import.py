"""Import licensed SMPL model files into `body_models/smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl`.

Accepted sources (`gtacli fetch --smpl-from PATH`): the official SMPL zip (v1.0:
`basicModel_f_lbs_10_207_0_v1.0.0.pkl`, `basicmodel_m_lbs_10_207_0_v1.0.0.pkl`; v1.1:
`basicmodel_{f,m,neutral}_lbs_10_207_0_v1.1.0.pkl`), the SMPLify zip
(`basicModel_neutral_lbs_10_207_0_v1.0.0.pkl`), a folder containing such files, or single `.pkl` files.

The originals are Python-2 pickles holding chumpy objects and old scipy sparse matrices; they are read by
`gtacli.io.legacy_pickle` (inert stand-ins, nothing from the file executed; `gtacli.body.smpl` reads them
the same way in place). The output is a plain pickle of numpy arrays (what `smplx.SMPL` reads). Zip entries with `..` or absolute paths are
refused, and nothing is written outside `<data root>/body_models/smpl/`.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from gtacli.body.smpl import NUM_VERTICES
from gtacli.body.smpl import check_smpl_arrays as check_body_arrays
from gtacli.errors import BadFileError, GtacliError, MissingFileError, PathLike, UnsafeFileError
from gtacli.io.atomic import atomic_write_bytes
from gtacli.io.legacy_pickle import loads_smpl_pickle
from gtacli.layout import GENDERS, DataLayout

OUTPUT_PICKLE_PROTOCOL = 4  # plain numpy arrays; no _codecs/NEWOBJ tricks
MAX_PICKLE_BYTES = 320 << 20  # the official SMPL/SMPLify pickles are < 300 MB: refuse more before reading it
READ_CHUNK_BYTES = 1 << 20  # zip members are inflated this much at a time (never a whole member at once)

# Where to get each gender (docs/reproduction.md §1.3).
SMPL_SOURCES = {
    "male": "https://smpl.is.tue.mpg.de/ (SMPL for Python, v1.0 or v1.1)",
    "female": "https://smpl.is.tue.mpg.de/ (SMPL for Python, v1.0 or v1.1)",
    "neutral": "https://smplify.is.tue.mpg.de/ (SMPLify code+model zip) or SMPL v1.1 from https://smpl.is.tue.mpg.de/",
}
# Harmless metadata copied to the output besides the required arrays.
OPTIONAL_KEYS = ("J", "bs_style", "bs_type", "joint2num", "vert_sym_idxs", "gender")


# --------------------------------------------------------------------------------------------------
# checking and writing a model


def check_smpl_arrays(model: Any, source: PathLike) -> Dict[str, np.ndarray]:
    """The model's arrays if it is an SMPL model proper (6890 vertices ...), else `BadFileError` saying why."""
    return check_body_arrays(model, source, num_vertices=NUM_VERTICES)


def plain_model(model: Mapping[str, Any], source: PathLike) -> Dict[str, Any]:
    """What we write: the required arrays (float64 / int64 / uint32 faces) plus harmless metadata."""
    arrays = check_smpl_arrays(model, source)
    out: Dict[str, Any] = {}
    for key, arr in arrays.items():
        if key == "f":
            out[key] = np.ascontiguousarray(arr, dtype=np.uint32)
        elif key == "kintree_table":
            out[key] = np.ascontiguousarray(arr, dtype=np.int64)
        else:
            out[key] = np.ascontiguousarray(arr, dtype=np.float64)
    for key in OPTIONAL_KEYS:
        value = model.get(key)
        if isinstance(value, (str, np.ndarray)):
            out[key] = value
    return out


# --------------------------------------------------------------------------------------------------
# finding the files


_GENDER_PATTERNS = [
    ("female", re.compile(r"(^|[^a-z])(f|female)([^a-z]|$)")),
    ("male", re.compile(r"(^|[^a-z])(m|male)([^a-z]|$)")),
    ("neutral", re.compile(r"(^|[^a-z])(n|neutral)([^a-z]|$)")),
]


# Other body-model families that share gendered names; inside a zip or folder they are skipped.
_OTHER_MODELS = re.compile(r"smplh|smpl_h|smplx|smpl_x|mano|flame|star_", re.IGNORECASE)


def gender_from_name(name: str) -> Optional[str]:
    """'basicModel_f_lbs_10_207_0_v1.0.0.pkl' -> 'female'; 'SMPL_NEUTRAL.pkl' -> 'neutral'; else None."""
    stem = PurePosixPath(name).name.lower()
    if _OTHER_MODELS.search(stem):
        return None
    if stem.endswith(".pkl"):
        stem = stem[:-4]
    for gender, pattern in _GENDER_PATTERNS:
        if pattern.search(stem):
            return gender
    return None


def _version_rank(name: str) -> Tuple[int, ...]:
    m = re.search(r"v(\d+)\.(\d+)\.(\d+)", name.lower())
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def _is_junk(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p == "__MACOSX" for p in parts) or PurePosixPath(name).name.startswith("._")


def _check_zip_member(zip_path: Path, name: str) -> None:
    """Refuse zip-slip: absolute names, drive letters, '..' components."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in PurePosixPath(norm).parts:
        raise UnsafeFileError(
            f"refusing zip entry '{name}': it points outside the archive (absolute path or '..')",
            path=zip_path,
            fix="use the original SMPL/SMPLify zip",
        )


@dataclass
class SmplCandidate:
    gender: str
    source: str  # shown to the user: file path or 'zip:member'
    read: Any  # () -> bytes
    version: Tuple[int, ...] = (0, 0, 0)


def _candidates_from_zip(path: Path) -> List[SmplCandidate]:
    try:
        zf = zipfile.ZipFile(path)
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BadFileError(
            f"not a readable zip archive ({exc})",
            path=path,
            fix="download the SMPL/SMPLify zip again (it may be truncated)",
        ) from None
    for info in infos:  # any unsafe entry refuses the whole archive
        _check_zip_member(path, info.filename)
    found = []
    for info in infos:
        name = info.filename
        if info.is_dir() or _is_junk(name) or not name.lower().endswith(".pkl"):
            continue
        gender = gender_from_name(name)
        if gender is None:
            continue
        if info.file_size > MAX_PICKLE_BYTES:
            raise BadFileError(
                f"zip entry '{name}' is implausibly large ({info.file_size} bytes; an SMPL pickle is < 300 MB)",
                path=path,
                fix="use the original SMPL/SMPLify zip",
            )

        def read(zf: zipfile.ZipFile = zf, info: zipfile.ZipInfo = info) -> bytes:
            return _read_member(zf, info, path)

        found.append(SmplCandidate(gender, f"{path}:{name}", read, _version_rank(name)))
    return found


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    """A zip member's bytes, inflated in small chunks: a member that inflates beyond what its directory entry
    declares (or beyond the cap) is refused after at most one more chunk, never after inflating it whole
    (`ZipFile.read` inflates everything before it truncates to the declared size)."""
    data = bytearray()
    got = 0
    try:
        with zf.open(info) as member:
            while True:
                chunk = member.read(READ_CHUNK_BYTES)
                if not chunk:
                    break
                got += len(chunk)
                if got > min(info.file_size, MAX_PICKLE_BYTES):
                    raise zipfile.BadZipFile(f"inflates beyond its declared {info.file_size} bytes")
                data += chunk
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
        raise BadFileError(
            f"zip entry '{info.filename}' cannot be read ({exc})",
            path=path,
            fix="download the zip again (it is corrupt)",
        ) from None
    return bytes(data)


def _read_pickle_file(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_PICKLE_BYTES:
        raise BadFileError(
            f"implausibly large for an SMPL pickle ({size} bytes; they are < 300 MB)",
            path=path,
            fix="pass the official SMPL/SMPLify model files",
        )
    return path.read_bytes()


def _candidate_from_file(path: Path, *, require_gender: bool) -> List[SmplCandidate]:
    gender = gender_from_name(path.name)
    if gender is None:
        if require_gender:
            raise GtacliError(
                "cannot tell the gender from the file name",
                path=path,
                fix="rename it to contain male/female/neutral (e.g. SMPL_MALE.pkl) or pass the original zip",
            )
        return []
    return [SmplCandidate(gender, str(path), lambda: _read_pickle_file(path), _version_rank(path.name))]


def find_candidates(sources: Sequence[PathLike]) -> List[SmplCandidate]:
    found: List[SmplCandidate] = []
    for src in sources:
        path = Path(src).expanduser()
        if not path.exists():
            raise MissingFileError(
                "SMPL source not found", path=path, fix="pass the SMPL zip, a folder or .pkl files"
            )
        if path.is_dir():
            for item in sorted(path.rglob("*")):
                if item.is_file() and not _is_junk(str(item)):
                    if item.suffix.lower() == ".zip":
                        found += _candidates_from_zip(item)
                    elif item.suffix.lower() == ".pkl":
                        found += _candidate_from_file(item, require_gender=False)
        elif zipfile.is_zipfile(path):
            found += _candidates_from_zip(path)
        elif path.suffix.lower() == ".pkl":
            found += _candidate_from_file(path, require_gender=True)
        elif path.suffix.lower() == ".zip":
            raise BadFileError(
                "not a readable zip archive", path=path, fix="download the SMPL/SMPLify zip again"
            )
        else:
            raise GtacliError(
                "not a zip, folder or .pkl file", path=path, fix="pass the SMPL zip, a folder or .pkl files"
            )
    return found


# --------------------------------------------------------------------------------------------------
# the import


@dataclass
class ImportReport:
    written: Dict[str, str] = field(default_factory=dict)  # gender -> path written
    sources: Dict[str, str] = field(default_factory=dict)  # gender -> where it came from
    present: List[str] = field(default_factory=list)  # genders already in the data root, not imported now
    missing: List[str] = field(default_factory=list)  # genders still absent afterwards

    def missing_hint(self) -> str:
        if not self.missing:
            return ""
        where = "; ".join(f"{g}: {SMPL_SOURCES[g]}" for g in self.missing)
        return f"still missing SMPL {', '.join(self.missing)} — get {where}, then run gtacli fetch --smpl-from <zip>"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "written": self.written,
            "sources": self.sources,
            "present": self.present,
            "missing": self.missing,
            "hint": self.missing_hint(),
        }


def import_smpl(sources: Sequence[PathLike], layout: DataLayout) -> ImportReport:
    """Convert every gendered SMPL model found in `sources` into the data root; report what is missing."""
    candidates = find_candidates(sources)
    if not candidates:
        raise BadFileError(
            "no SMPL model file found (expected names like basicmodel_m_lbs_10_207_0_v1.1.0.pkl)",
            path=", ".join(str(s) for s in sources),
            fix="pass the official SMPL zip, the SMPLify zip, a folder or .pkl files",
        )
    best: Dict[str, SmplCandidate] = {}
    for cand in candidates:  # several versions of one gender: the newest wins
        if cand.gender not in best or cand.version > best[cand.gender].version:
            best[cand.gender] = cand
    # Convert everything first, write afterwards: a bad file leaves nothing half-imported.
    converted: Dict[str, bytes] = {}
    for gender, cand in best.items():
        model = loads_smpl_pickle(cand.read(), cand.source)
        converted[gender] = pickle.dumps(plain_model(model, cand.source), protocol=OUTPUT_PICKLE_PROTOCOL)
    report = ImportReport()
    for gender, data in converted.items():
        dest = layout.smpl_model(gender)
        atomic_write_bytes(dest, data)
        report.written[gender] = str(dest)
        report.sources[gender] = best[gender].source
    for gender in GENDERS:
        if gender not in report.written:
            (report.present if layout.smpl_model(gender).is_file() else report.missing).append(gender)
    return report
