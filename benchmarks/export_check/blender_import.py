"""Run inside Blender (`blender -b --factory-startup --python blender_import.py -- ARGS`): import an exported
.glb and/or .bvh with the importers' default settings and write what Blender made of them to a JSON file (Blender's
Python need not have numpy):

  glb_joints (K, 24, 3)   world positions of the armature's bones named as SMPL's joints, at video frames K
  glb_vertices (V, 3)     the evaluated (skinned, shape-keyed) mesh at --mesh-frame, world coordinates
  glb_keys (2,)           first and last keyframe of the imported action (scene frames)
  bvh_joints (K, 24, 3)   the same for the BVH armature (scene frame = 1 + video frame - first frame)
  bvh_fps, bvh_keys       the scene's frame rate after the BVH import (it sets it from Frame Time) and the
                          first and last keyframe of the BVH armature's action

Blender is z up: its glTF importer turns glTF's y up into z up, and the BVH importer does the same with its
default axes (forward -Z, up Y); `--bvh-up z` imports a --up z file with forward Y, up Z instead.
  --render PNG             also renders --mesh-frame through the imported camera (Cycles, CPU) at
                           --render-scale of the video's size, transparent background

Arguments: --glb PATH --bvh PATH --frames 0,7,15 --mesh-frame 7 --first-frame 0 --out OUT.json
"""

import argparse
import json
import struct
import sys

import bpy

try:  # Blender 3.4's glTF importer uses np.bool, which numpy 1.24 (Debian's python3-numpy) removed
    import numpy

    if not hasattr(numpy, "bool") or numpy.bool is not bool:
        numpy.bool = bool
except ImportError:
    pass  # the glTF importer then fails with its own message; the BVH importer needs no numpy

JOINTS = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand",
    "right_hand",
)  # fmt: skip


def patch_bvh_importer():
    """Blender 3.4's BVH importer opens files with mode 'rU', which Python 3.11 (Debian's Blender) refuses:
    give the importer module an `open` that drops the 'U'."""
    import builtins

    from io_anim_bvh import import_bvh

    def open_without_u(file, mode="r", *args, **kwargs):
        return builtins.open(file, mode.replace("U", ""), *args, **kwargs)

    import_bvh.open = open_without_u


def parse():
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    p = argparse.ArgumentParser()
    p.add_argument("--glb")
    p.add_argument("--bvh")
    p.add_argument("--bvh-up", default="y")
    p.add_argument("--frames", required=True)
    p.add_argument("--mesh-frame", type=int)
    p.add_argument("--first-frame", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--render")
    p.add_argument("--render-scale", type=float, default=0.25)
    return p.parse_args(argv)


def glb_extras(path):
    """What gtacli wrote into asset.extras: the frame rate (a user types it into Output Properties > Frame
    Rate before importing) and the camera's image size."""
    with open(path, "rb") as f:
        f.read(12)
        length, _ = struct.unpack("<II", f.read(8))
        doc = json.loads(f.read(length))
    return doc["asset"]["extras"]["gtacli"], doc["cameras"][0]["extras"]


def render(path, frame, camera_extras, scale):
    scene = bpy.context.scene
    scene.camera = next(o for o in scene.objects if o.type == "CAMERA")
    scene.frame_set(frame)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.cycles.use_denoising = False  # Debian builds Blender without OpenImageDenoise
    scene.render.resolution_x = int(camera_extras["width"])
    scene.render.resolution_y = int(camera_extras["height"])
    scene.render.resolution_percentage = max(1, int(round(100 * scale)))
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    world = bpy.data.worlds.new("light") if scene.world is None else scene.world
    scene.world = world
    world.color = (0.6, 0.6, 0.6)
    bpy.ops.object.light_add(type="SUN", rotation=(0.6, 0.2, 0.3))
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)


def set_scene_rate(fps):
    scene = bpy.context.scene
    scene.render.fps = int(round(fps))
    scene.render.fps_base = scene.render.fps / fps


def clear_scene():
    bpy.ops.object.select_all(action="SELECT")
    bpy.ops.object.delete()


def joint_positions(armature, frames):
    out = []
    for frame in frames:
        bpy.context.scene.frame_set(frame)
        bones = armature.pose.bones
        out.append([list(armature.matrix_world @ bones[name].head) for name in JOINTS])
    return out


def action_keys(armature):
    keys = [k.co[0] for fc in armature.animation_data.action.fcurves for k in fc.keyframe_points]
    return [min(keys), max(keys)]


def main():
    args = parse()
    frames = [int(v) for v in args.frames.split(",")]
    result = {}
    if args.glb:
        clear_scene()
        extras, camera_extras = glb_extras(args.glb)
        set_scene_rate(float(extras["frame_rate"]))
        bpy.ops.import_scene.gltf(filepath=args.glb)
        armature = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
        result["glb_joints"] = joint_positions(armature, frames)
        keys = [k.co[0] for fc in armature.animation_data.action.fcurves for k in fc.keyframe_points]
        result["glb_keys"] = [min(keys), max(keys)]
        meshes = [o for o in bpy.context.scene.objects if o.type == "MESH"]
        if meshes and args.mesh_frame is not None:
            bpy.context.scene.frame_set(args.mesh_frame)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            obj = meshes[0].evaluated_get(depsgraph)
            mesh = obj.to_mesh()
            world = obj.matrix_world
            result["glb_vertices"] = [list(world @ v.co) for v in mesh.vertices]
            keys = meshes[0].data.shape_keys
            result["glb_shape_keys"] = len(keys.key_blocks) if keys else 0
            obj.to_mesh_clear()
        cameras = [o for o in bpy.context.scene.objects if o.type == "CAMERA"]
        result["glb_cameras"] = len(cameras)
        if args.render:
            render(args.render, args.mesh_frame, camera_extras, args.render_scale)
    if args.bvh:
        clear_scene()
        patch_bvh_importer()
        axes = {"y": ("-Z", "Y"), "z": ("Y", "Z")}[args.bvh_up]
        bpy.ops.import_anim.bvh(
            filepath=args.bvh, axis_forward=axes[0], axis_up=axes[1], update_scene_fps=True,
            update_scene_duration=True,
        )  # fmt: skip
        armature = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
        scene = bpy.context.scene
        result["bvh_fps"] = scene.render.fps / scene.render.fps_base
        result["bvh_keys"] = action_keys(armature)
        result["bvh_joints"] = joint_positions(armature, [1 + f - args.first_frame for f in frames])
    with open(args.out, "w") as f:
        json.dump(result, f)


main()
