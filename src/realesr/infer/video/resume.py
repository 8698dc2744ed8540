"""The work folder beside the output (``.NAME.realesr-work``) that makes every stop resumable.

- ``manifest.json``: what the work is (input identity, options, model) and the closed segments (files of whole
  GOPs with their frames' timestamps). A segment is closed and renamed into place before the manifest names it.
- ``frames/NNNNNNNN.planes``: each finished frame of the open segment, exactly as it goes into the encoder (its
  planes' raw samples one after the other: no archive, no checksum, no compression to pay per frame), written
  before it is encoded and removed when its segment closes. A stop (Ctrl-C, SIGTERM, SIGKILL, power loss)
  loses no finished frame whatever the clip's length: the resumed run re-encodes the open segment from these
  (the network is not run again for them), so segment boundaries, hence the bytes, are those of an
  uninterrupted run.

Both files are read back through realesr.statefiles: a damaged manifest is refused, nothing is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from realesr.atomic import atomic_path, atomic_write_text
from realesr.infer.video.options import VideoError, work_folder_for
from realesr.schema import Int, Name, Record, Seq
from realesr.statefiles import StateFileError, read_json

MANIFEST_VERSION = 3  # 3: raw .planes frame files (2 had .npz)
_SEGMENT = Record(
    {"file": Name(), "pts_file": Name(), "first": Int(0), "frames": Int(0)},
    required=frozenset({"file", "pts_file", "first", "frames"}),
)
_MANIFEST = Record({"key": Record({}), "segments": Seq(_SEGMENT)}, required=frozenset({"key", "segments"}))
_PTS = Record(
    {"pts": Seq(Int(), max_len=10**7), "durations": Seq(Int(0), max_len=10**7)},
    required=frozenset({"pts", "durations"}),
)


def input_identity(path: Path) -> dict:
    """Size, mtime and a hash of the first MiB: a changed input does not resume an old work folder."""
    info = path.stat()
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read(1 << 20)).hexdigest()
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256_first_mib": digest}


class WorkFolder:
    def __init__(self, dest: Path, key: dict) -> None:
        self.path = work_folder_for(dest)
        self.frames = self.path / "frames"
        self.key = {"version": MANIFEST_VERSION, **key}
        self.notes: list[str] = []

    # ----------------------------------------------------------------------------------------- manifest

    def load(self) -> list[dict]:
        """The closed segments of an earlier run of the same work (in order, each checked); a folder of other
        work is started over with a note; a damaged manifest raises StateFileError and nothing is touched."""
        manifest = self.path / "manifest.json"
        if self.path.is_dir() and manifest.exists():
            remedy = f"delete the folder {self.path} to start this video over"
            data = read_json(manifest, _MANIFEST, what="the video work manifest", remedy=remedy)
            if data["key"] == self.key:
                segments = []
                for seg in data["segments"]:
                    if not self._segment_done(seg):
                        break
                    segments.append(seg)
                return segments
            self.notes.append("an earlier work folder for other input or options was started over")
        if self.path.exists():
            shutil.rmtree(self.path)
        self.frames.mkdir(parents=True)
        self.write([])
        return []

    def write(self, segments: list[dict]) -> None:
        atomic_write_text(self.path / "manifest.json", json.dumps({"key": self.key, "segments": segments}, indent=1))

    def segment_times(self, seg: dict) -> tuple[list[int], list[int]]:
        """The (pts, durations) of a closed segment, checked: one pair per frame."""
        path = self.path / seg["pts_file"]
        remedy = f"delete the folder {self.path} to redo this video"
        try:
            meta = read_json(path, _PTS, what="a segment's timestamps", remedy=remedy)
        except FileNotFoundError:
            raise VideoError(f"{path}: a segment's timestamps are missing; {remedy}") from None
        except StateFileError as err:
            raise VideoError(str(err)) from None
        if not len(meta["pts"]) == len(meta["durations"]) == seg["frames"]:
            raise VideoError(f"{path}: {seg['frames']} frames but not as many timestamps; {remedy}")
        return meta["pts"], meta["durations"]

    def _segment_done(self, seg: dict) -> bool:
        try:
            self.segment_times(seg)
        except VideoError:
            return False
        return (self.path / seg["file"]).is_file()

    def close_segment(self, part: Path, name: str, first: int, pts: list[int], durations: list[int]) -> dict:
        """Move a finished segment into place with its timestamps; its cached frames are no longer needed."""
        pts_file = name + ".pts.json"
        atomic_write_text(self.path / pts_file, json.dumps({"pts": pts, "durations": durations}))
        os.replace(part, self.path / name)
        return {"file": name, "pts_file": pts_file, "first": first, "frames": len(pts)}

    def drop_frames(self, first: int, count: int) -> None:
        for index in range(first, first + count):
            self.frame_path(index).unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # ----------------------------------------------------------------------------------------- frames

    def frame_path(self, index: int) -> Path:
        return self.frames / f"{index:08d}.planes"

    def save_frame(self, index: int, payload: list[np.ndarray]) -> None:
        """Frame ``index`` as it goes into the encoder (its Y'CbCr planes: a quarter of the network's 16-bit RGB
        at 4:2:0), renamed into place whole: a crash leaves no half frame."""
        self.frames.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.frame_path(index), suffix=".part") as tmp, open(tmp, "wb") as out:
            for plane in payload:
                out.write(np.ascontiguousarray(plane).data)

    def load_frame(self, index: int, like: list[np.ndarray]) -> list[np.ndarray] | None:
        """A cached frame, or None when it is missing or not of the size the planes of ``like`` make (then the
        network redoes it)."""
        try:
            data = self.frame_path(index).read_bytes()
        except OSError:
            return None
        if len(data) != sum(a.nbytes for a in like):
            return None
        arrays, start = [], 0
        for a in like:
            arrays.append(np.frombuffer(data, a.dtype, a.size, start).reshape(a.shape))
            start += a.nbytes
        return arrays

    def cached(self) -> set[int]:
        """Indices of the frames on disk (names only: a damaged one is found when it is loaded)."""
        found = set()
        for path in self.frames.glob("*.planes") if self.frames.is_dir() else ():
            if path.stem.isdigit():
                found.add(int(path.stem))
        return found
