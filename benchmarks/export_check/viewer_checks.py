"""The external programs people open animation files with, driven from Python: Khronos glTF-Validator (node),
Blender (headless, its own glTF and BVH importers) and three.js in headless Chromium. Used by the tests under
tests/export and by benchmarks/check_animation_export.py; each `*_missing()` says why a check cannot run (or None).

Node packages come from benchmarks/export_check/node_modules (`npm ci --prefix benchmarks/export_check`) or the folder
named by $GTACLI_EXPORT_NODE_MODULES. Chromium runs headless without sandbox or GPU (WebGL on SwiftShader), with
a fresh profile, and loads pages from a server on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # WebGL without a GPU: SwiftShader (newer Chromium wants it asked for explicitly)
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
)  # fmt: skip


def node_modules() -> Path:
    return Path(os.environ.get("GTACLI_EXPORT_NODE_MODULES", HERE / "node_modules"))


def _program(*names: str) -> Optional[str]:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def validator_missing() -> Optional[str]:
    if _program("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    if not (node_modules() / "gltf-validator").is_dir():
        return (
            f"gltf-validator is not installed in {node_modules()} (npm ci --prefix benchmarks/export_check)"
        )
    return None


def blender_missing() -> Optional[str]:
    if _program("blender") is None:
        return "blender is not installed (apt-get install blender python3-numpy)"
    return None


def chromium_missing() -> Optional[str]:
    if _program("chromium", "chromium-browser", "google-chrome") is None:
        return "chromium is not installed (apt-get install chromium)"
    if not (node_modules() / "three").is_dir():
        return f"three is not installed in {node_modules()} (npm ci --prefix benchmarks/export_check)"
    return None


def validate_gltf(paths: Sequence[Path], timeout: float = 300) -> List[Dict]:
    """Khronos glTF-Validator's report (errors, warnings, infos, messages) for every file."""
    env = {**os.environ, "GLTF_VALIDATOR": str(node_modules() / "gltf-validator" / "index.js")}
    proc = subprocess.run(
        ["node", str(HERE / "validate.mjs"), *map(str, paths)], capture_output=True, text=True, timeout=timeout,
        env=env,
    )  # fmt: skip
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if len(reports) != len(paths):
        raise RuntimeError(f"gltf-validator failed: {proc.stderr[-2000:]}")
    return reports


def blender_env() -> dict:
    """The environment for Blender: a distribution's Blender runs on the system Python and takes its home from
    the first `python3.X` on PATH, so a pyenv or virtual environment ahead on PATH (the test run's own) would
    hand it another standard library without the system numpy its glTF importer needs. Keep those off PATH."""
    keep = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        has_python = any(Path(folder).glob("python3*")) if folder and Path(folder).is_dir() else False
        if not has_python or folder in ("/usr/bin", "/bin"):
            keep.append(folder)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(keep)
    return env


def blender_import(
    *,
    glb: Optional[Path] = None,
    bvh: Optional[Path] = None,
    frames: Sequence[int],
    mesh_frame: Optional[int] = None,
    first_frame: int = 0,
    bvh_up: str = "y",
    render: Optional[Path] = None,
    render_scale: float = 0.25,
    timeout: float = 600,
) -> Dict:
    """Import with Blender's own importers (defaults) and return what `blender_import.py` measured."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "blender.json"
        cmd = ["blender", "-b", "--factory-startup", "--python-exit-code", "1",
               "--python", str(HERE / "blender_import.py"), "--",
               "--frames", ",".join(str(int(f)) for f in frames), "--first-frame", str(first_frame),
               "--bvh-up", bvh_up, "--out", str(out)]  # fmt: skip
        if glb is not None:
            cmd += ["--glb", str(glb)]
        if bvh is not None:
            cmd += ["--bvh", str(bvh)]
        if mesh_frame is not None:
            cmd += ["--mesh-frame", str(mesh_frame)]
        if render is not None:
            cmd += ["--render", str(Path(render).resolve()), "--render-scale", str(render_scale)]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp, env=blender_env()
        )
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"blender failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-3000:]}")
        result = json.loads(out.read_text())
    return {k: np.asarray(v) if isinstance(v, list) else v for k, v in result.items()}


class _Handler(SimpleHTTPRequestHandler):
    """Serves render.html, three.js and the model; receives the rendered picture."""

    def __init__(self, *args, routes: Dict[str, Path], inbox: Dict, done: threading.Event, **kwargs):
        self.routes, self.inbox, self.done = routes, inbox, done
        super().__init__(*args, directory=str(HERE), **kwargs)

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        for prefix, target in self.routes.items():
            if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
                rest = path[len(prefix) :] if prefix.endswith("/") else ""
                resolved = (target / rest).resolve() if rest else target
                return str(resolved)
        return str(HERE / "render.html")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.inbox[self.path] = self.rfile.read(length).decode("utf-8", "replace")
        self.send_response(204)
        self.end_headers()
        self.done.set()

    def log_message(self, *args) -> None:  # keep test output clean
        pass


def threejs_silhouette(
    glb: Path, time_s: float, width: int, height: int, timeout: float = 180
) -> Tuple[np.ndarray, Dict]:
    """(mask (height, width) bool, info): three.js renders the .glb at `time_s` through its camera."""
    inbox: Dict[str, str] = {}
    done = threading.Event()
    routes = {
        "/model.glb": Path(glb).resolve(),
        "/three/": node_modules() / "three",
        "/render.html": HERE / "render.html",
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, routes=routes, inbox=inbox, done=done))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/render.html?w={width}&h={height}&t={time_s!r}"
    chromium = _program("chromium", "chromium-browser", "google-chrome")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            if not done.wait(timeout):
                raise RuntimeError(f"three.js page did not answer within {timeout:.0f} s")
        finally:
            proc.terminate()
            try:
                _, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            server.shutdown()
            server.server_close()
    if "/error" in inbox:
        raise RuntimeError(f"three.js failed: {inbox['/error']}")
    info = json.loads(inbox["/result"])
    data = base64.b64decode(info.pop("png").split(",", 1)[1])
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    return image > 127, info


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
