"""A small glTF 2.0 evaluator written from the specification (accessors, node TRS, LINEAR animation sampling,
morph targets, skinning), used to check exported files without any viewer: where the joints are and what the
skinned mesh looks like at a given time."""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import pygltflib

_COMPONENTS = {
    5120: np.int8,
    5121: np.uint8,
    5122: np.int16,
    5123: np.uint16,
    5125: np.uint32,
    5126: np.float32,
}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class Gltf:
    def __init__(self, path):
        self.doc = pygltflib.GLTF2().load(str(path))
        self.blob = self.doc.binary_blob()

    def accessor(self, index: int) -> np.ndarray:
        acc = self.doc.accessors[index]
        view = self.doc.bufferViews[acc.bufferView]
        dtype = np.dtype(_COMPONENTS[acc.componentType])
        width = _WIDTH[acc.type]
        start = view.byteOffset + (acc.byteOffset or 0)
        data = np.frombuffer(self.blob, dtype, acc.count * width, start)
        return data.reshape(acc.count, width).astype(np.float64 if dtype == np.float32 else np.int64)

    def node_index(self, name: str) -> int:
        return next(i for i, n in enumerate(self.doc.nodes) if n.name == name)

    def _sample(self, sampler, time: float) -> np.ndarray:
        times = self.accessor(sampler.input)[:, 0]
        values = self.accessor(sampler.output)
        values = values.reshape(len(times), -1)
        if time <= times[0]:
            return values[0]
        if time >= times[-1]:
            return values[-1]
        k = int(np.searchsorted(times, time)) - 1
        w = (time - times[k]) / (times[k + 1] - times[k])
        return (1 - w) * values[k] + w * values[k + 1]  # exact at keys; between keys only for scalars/vectors

    def local_matrices(self, time: float, animation: int = 0) -> List[np.ndarray]:
        trs: Dict[int, Dict[str, np.ndarray]] = {}
        for i, node in enumerate(self.doc.nodes):
            trs[i] = {
                "translation": np.array(node.translation or [0, 0, 0], np.float64),
                "rotation": np.array(node.rotation or [0, 0, 0, 1], np.float64),
                "scale": np.array(node.scale or [1, 1, 1], np.float64),
            }
        self.morph: Dict[int, np.ndarray] = {}
        if self.doc.animations:
            anim = self.doc.animations[animation]
            for channel in anim.channels:
                value = self._sample(anim.samplers[channel.sampler], time)
                if channel.target.path == "weights":
                    self.morph[channel.target.node] = value
                else:
                    trs[channel.target.node][channel.target.path] = value
        out = []
        for i in range(len(self.doc.nodes)):
            x, y, z, w = trs[i]["rotation"] / np.linalg.norm(trs[i]["rotation"])
            rot = np.array(
                [
                    [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
                ]
            )
            m = np.eye(4)
            m[:3, :3] = rot * trs[i]["scale"]
            m[:3, 3] = trs[i]["translation"]
            out.append(m)
        return out

    def world_matrices(self, time: float) -> List[np.ndarray]:
        local = self.local_matrices(time)
        world: List[Optional[np.ndarray]] = [None] * len(local)

        def visit(i: int, parent: np.ndarray) -> None:
            world[i] = parent @ local[i]
            for c in self.doc.nodes[i].children or []:
                visit(c, world[i])

        for root in self.doc.scenes[self.doc.scene].nodes:
            visit(root, np.eye(4))
        return world  # type: ignore[return-value]

    def joint_positions(self, time: float, names) -> np.ndarray:
        world = self.world_matrices(time)
        return np.array([world[self.node_index(n)][:3, 3] for n in names])

    def skinned_vertices(self, time: float) -> np.ndarray:
        world = self.world_matrices(time)
        node_i = next(i for i, n in enumerate(self.doc.nodes) if n.mesh is not None)
        node = self.doc.nodes[node_i]
        mesh = self.doc.meshes[node.mesh]
        prim = mesh.primitives[0]
        pos = self.accessor(prim.attributes.POSITION)
        weights = self.morph.get(node_i, np.array(mesh.weights or []))
        for w, target in zip(weights, prim.targets or []):
            position = target["POSITION"] if isinstance(target, dict) else target.POSITION
            pos = pos + w * self.accessor(position)
        skin = self.doc.skins[node.skin]
        ibm = self.accessor(skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
        joint_mats = np.array([world[j] @ ibm[k] for k, j in enumerate(skin.joints)])
        blend = np.zeros((len(pos), 4, 4))
        n = 0
        attrs = prim.attributes
        while getattr(attrs, f"JOINTS_{n}", None) is not None:
            joints = self.accessor(getattr(attrs, f"JOINTS_{n}"))
            wts = self.accessor(getattr(attrs, f"WEIGHTS_{n}"))
            for c in range(4):
                blend += wts[:, c, None, None] * joint_mats[joints[:, c]]
            n += 1
        return np.einsum("vij,vj->vi", blend[:, :3, :3], pos) + blend[:, :3, 3]
