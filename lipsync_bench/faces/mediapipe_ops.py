"""MediaPipe's custom TFLite ops in numpy, and a runner for ``.tflite`` models that use them.

``face_landmark_with_attention.tflite`` (the 478-point mesh of ``refine_landmarks``) calls three ops
that only mediapipe's own resolver registers: ``Landmarks2TransformMatrix``, ``TransformTensorBilinear``
and ``TransformLandmarks`` (all version 2). ai-edge-litert refuses to load such a model, so
``CustomOpModel`` cuts it at those ops: each run of standard ops becomes a model of its own (the same
tensors and weights, in memory), run by the LiteRT interpreter (XNNPACK, as mediapipe's
InferenceCalculator runs it, whose delegate partitions the graph at the same ops), and each custom op is
computed here from its flexbuffer ``custom_options``.

The ops follow mediapipe v0.10.21's ``mediapipe/util/tflite/operations/`` (``landmarks_to_transform_matrix.cc``,
``transform_tensor_bilinear.cc``, ``transform_landmarks.cc``, the ``v2`` kernels that
``util/tflite/cpu_op_resolver.cc`` registers) and their option parsing in TensorFlow's
``lite/delegates/gpu/common/mediapipe/*.cc``; float32 throughout, as there.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import flatbuffers
import numpy as np
from flatbuffers import flexbuffers

from ..errors import UnavailableError


def landmarks_to_transform_matrix(landmarks: np.ndarray, options: dict) -> np.ndarray:
    """``Landmarks2TransformMatrix`` v2: the (1, 4, 4) matrix taking an ``output_height`` x
    ``output_width`` grid onto the rotated box (scaled by ``scale_x``, ``scale_y``) around the subset
    of the landmarks, rotated so that the left -> right rotation landmarks point along
    ``target_rotation_radians``.

    Args:
        landmarks: (1, N, 3) float32 landmarks (x, y, z) in the feature map's pixels.
        options: the op's custom options (``subset_idxs``, ``left_rotation_idx``, ``right_rotation_idx``,
            ``target_rotation_radians``, ``output_height``, ``output_width``, ``scale_x``, ``scale_y``).

    Returns:
        (1, 4, 4) float32: row-major; rows 0 and 1 map (x, y, 0, 1) of the output grid to the input's pixels.

    Example:
        >>> pts = np.array([[[0, 0, 0], [4, 0, 0], [4, 2, 0], [0, 2, 0]]], dtype=np.float32)
        >>> opts = dict(subset_idxs=[0, 1, 2, 3], left_rotation_idx=0, right_rotation_idx=1,
        ...             target_rotation_radians=0.0, output_height=2, output_width=2, scale_x=1.0, scale_y=1.0)
        >>> landmarks_to_transform_matrix(pts, opts)[0, :2].tolist()
        [[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
    """
    f32 = np.float32
    pts = np.asarray(landmarks, dtype=f32).reshape(-1, 3)
    left, right = pts[options["left_rotation_idx"]], pts[options["right_rotation_idx"]]
    # EstimateRotationRadians: target - atan2 of the left -> right vector
    rotation = f32(options["target_rotation_radians"]) - np.arctan2(right[1] - left[1], right[0] - left[0])
    # EstimateCenterAndSize: the subset (an odd count repeats its last index: no change to min / max)
    # rotated by `rotation`, its axis-aligned box, the box's centre rotated back
    subset = pts[np.asarray(options["subset_idxs"], dtype=np.int64), :2]
    c, s = np.cos(rotation), np.sin(rotation)
    rx = c * subset[:, 0] - s * subset[:, 1]
    ry = s * subset[:, 0] + c * subset[:, 1]
    width, height = rx.max() - rx.min(), ry.max() - ry.min()
    mx, my = (rx.min() + rx.max()) / f32(2), (ry.min() + ry.max()) / f32(2)
    ci, si = np.cos(-rotation), np.sin(-rotation)
    centre_x, centre_y = ci * mx - si * my, si * mx + ci * my
    # LandmarksToTransformMatrixV2: shift(centre) . rotation(-rotation) . scale . shift(-output / 2)
    out_w, out_h = options["output_width"], options["output_height"]
    one, zero = f32(1), f32(0)
    shift = np.array([[one, zero, zero, centre_x], [zero, one, zero, centre_y], [zero, zero, one, zero],
                      [zero, zero, zero, one]], dtype=f32)
    rotate = np.array([[ci, -si, zero, zero], [si, ci, zero, zero], [zero, zero, one, zero],
                       [zero, zero, zero, one]], dtype=f32)
    scale = np.diag([f32(options["scale_x"]) * width / f32(out_w), f32(options["scale_y"]) * height / f32(out_h),
                     one, one]).astype(f32)
    shift2 = np.eye(4, dtype=f32)
    shift2[0, 3], shift2[1, 3] = -(out_w / 2.0), -(out_h / 2.0)
    return (((shift @ rotate) @ scale) @ shift2).astype(f32)[None]


def transform_tensor_bilinear(features: np.ndarray, matrix: np.ndarray, options: dict) -> np.ndarray:
    """``TransformTensorBilinear`` v2: an ``output_height`` x ``output_width`` crop of an NHWC tensor,
    each output pixel centre mapped through the matrix (with mediapipe's half-pixel correction) and
    sampled bilinearly; 0 where it falls outside the input (and for the neighbours past its last
    row / column).

    Args:
        features: (1, H, W, C) float32.
        matrix: (1, 4, 4) float32 (``landmarks_to_transform_matrix``'s).
        options: ``output_height``, ``output_width``.

    Returns:
        (1, output_height, output_width, C) float32.

    Example:
        >>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
        >>> transform_tensor_bilinear(x, np.eye(4, dtype=np.float32)[None], {"output_height": 2,
        ...                           "output_width": 2})[0, :, :, 0].tolist()
        [[0.0, 1.0], [4.0, 5.0]]
    """
    f32 = np.float32
    data = np.asarray(features, dtype=f32)[0]
    m = np.asarray(matrix, dtype=f32).reshape(4, 4)
    in_h, in_w = data.shape[:2]
    out_h, out_w = int(options["output_height"]), int(options["output_width"])
    # align-corners correction: T -> S . T . A (A adds 0.5 to the output pixel, S takes 0.5 off)
    x_shift = m[0, 3] + m[0, 0] * f32(0.5) + m[0, 1] * f32(0.5) - f32(0.5)
    y_shift = m[1, 3] + m[1, 0] * f32(0.5) + m[1, 1] * f32(0.5) - f32(0.5)
    oy, ox = np.meshgrid(np.arange(out_h, dtype=f32), np.arange(out_w, dtype=f32), indexing="ij")
    tx = m[0, 0] * ox + m[0, 1] * oy + x_shift
    ty = m[1, 0] * ox + m[1, 1] * oy + y_shift
    inside = (tx >= 0) & (tx <= in_w - 1) & (ty >= 0) & (ty <= in_h - 1)
    x0, y0 = np.floor(tx), np.floor(ty)
    fx, fy = (tx - x0)[..., None], (ty - y0)[..., None]
    # ReadValue gives 0 past the last row / column; inside the input that neighbour is read only at
    # tx == W - 1 (or ty == H - 1), with weight 0, so reading the edge again gives the same sum
    x0i = np.clip(x0, 0, in_w - 1).astype(np.intp).ravel()
    y0i = np.clip(y0, 0, in_h - 1).astype(np.intp).ravel()
    x1i, y1i = np.minimum(x0i + 1, in_w - 1), np.minimum(y0i + 1, in_h - 1)
    flat = data.reshape(in_h * in_w, -1)
    shape = (out_h, out_w, flat.shape[1])
    q11 = flat.take(y0i * in_w + x0i, axis=0).reshape(shape)
    q21 = flat.take(y0i * in_w + x1i, axis=0).reshape(shape)
    q12 = flat.take(y1i * in_w + x0i, axis=0).reshape(shape)
    q22 = flat.take(y1i * in_w + x1i, axis=0).reshape(shape)
    upper = (f32(1) - fx) * q11 + fx * q21
    lower = (f32(1) - fx) * q12 + fx * q22
    out = fy * lower + (f32(1) - fy) * upper
    return np.where(inside[..., None], out, f32(0)).astype(f32)[None]


def transform_landmarks(landmarks: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``TransformLandmarks`` v2: (x, y) of each landmark through the matrix's first two rows
    (as the point (x, y, 0, 1)); a third coordinate, if any, unchanged.

    Args:
        landmarks: (1, N, 2 or 3) float32.
        matrix: (1, 4, 4) float32.

    Returns:
        The same shape, float32.

    Example:
        >>> m = np.eye(4, dtype=np.float32)[None]; m[0, 0, 3] = 1
        >>> transform_landmarks(np.array([[[1, 2]]], dtype=np.float32), m).tolist()
        [[[2.0, 2.0]]]
    """
    out = np.array(landmarks, dtype=np.float32)
    m = np.asarray(matrix, dtype=np.float32).reshape(4, 4)
    x, y = out[..., 0].copy(), out[..., 1].copy()
    out[..., 0] = m[0, 0] * x + m[0, 1] * y + m[0, 3]
    out[..., 1] = m[1, 0] * x + m[1, 1] * y + m[1, 3]
    return out


#: The custom ops computed here, by their custom code (all version 2): f(inputs, options) -> output.
CUSTOM_OPS: dict[str, Callable[[list[np.ndarray], dict], np.ndarray]] = {
    "Landmarks2TransformMatrix": lambda inputs, options: landmarks_to_transform_matrix(inputs[0], options),
    "TransformTensorBilinear": lambda inputs, options: transform_tensor_bilinear(inputs[0], inputs[1], options),
    "TransformLandmarks": lambda inputs, options: transform_landmarks(inputs[0], inputs[1]),
}


class CustomOpModel:
    """A ``.tflite`` model with mediapipe's custom ops, run as LiteRT pieces and numpy ops.

    Args:
        path: the model file (one subgraph, float32 input and outputs).
        num_threads: the LiteRT interpreters' threads.

    Example:
        >>> model = CustomOpModel("face_landmark_with_attention.tflite")  # doctest: +SKIP
        >>> outputs = model.run(crop[None])  # the model's outputs, in its output order  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1):
        try:
            from ai_edge_litert import schema_py_generated as schema
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise UnavailableError("the mediapipe landmarker needs the package ai-edge-litert "
                                   "(pip install ai-edge-litert)") from None
        self.path = Path(path)
        content = self.path.read_bytes()
        model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
        if len(model.subgraphs) != 1:
            raise UnavailableError(f"{self.path.name}: expected one subgraph, found {len(model.subgraphs)}")
        graph = model.subgraphs[0]
        self.inputs = [int(t) for t in graph.inputs]
        self.outputs = [int(t) for t in graph.outputs]
        custom = {}
        for i, code in enumerate(model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.CUSTOM:
                name = code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
                if name not in CUSTOM_OPS or code.version != 2:
                    raise UnavailableError(f"{self.path.name} uses the custom op {name} v{code.version}, "
                                           f"not one of {sorted(CUSTOM_OPS)} v2")
                custom[i] = name
        ops = graph.operators
        # blocks in execution order: ("litert", [op indices]) for each run of standard ops, ("custom", i)
        blocks: list[tuple[str, object]] = []
        for i, op in enumerate(ops):
            if op.opcodeIndex in custom:
                blocks.append(("custom", i))
            elif blocks and blocks[-1][0] == "litert":
                blocks[-1][1].append(i)
            else:
                blocks.append(("litert", [i]))
        readers: dict[int, set[int]] = {}
        for i, op in enumerate(ops):
            for t in op.inputs:
                readers.setdefault(int(t), set()).add(i)
        constant = {t for t, tensor in enumerate(graph.tensors)
                    if tensor.buffer > 0 and model.buffers[tensor.buffer].data is not None
                    and len(model.buffers[tensor.buffer].data)}
        self._steps: list[tuple] = []
        #: (custom code, options) of each custom op, in execution order.
        self.custom_ops: list[tuple[str, dict]] = []
        all_ops = graph.operators
        model.signatureDefs = None  # they name the whole model's inputs and outputs
        for kind, what in blocks:
            if kind == "custom":
                op = ops[what]
                raw = op.customOptions
                options = flexbuffers.Loads(bytes(raw)) if raw is not None and len(raw) else {}
                self.custom_ops.append((custom[op.opcodeIndex], options))
                self._steps.append(("custom", CUSTOM_OPS[custom[op.opcodeIndex]], options,
                                    [int(t) for t in op.inputs], int(op.outputs[0])))
                continue
            # a piece: its ops, fed what earlier steps made, giving what later steps (or the caller) read
            members = set(what)
            produced = {int(t) for i in what for t in ops[i].outputs}
            needed = sorted({int(t) for i in what for t in ops[i].inputs
                             if t >= 0 and int(t) not in produced and int(t) not in constant})
            given = sorted(t for t in produced if t in self.outputs or readers.get(t, set()) - members)
            graph.operators = [all_ops[i] for i in what]
            graph.inputs, graph.outputs = np.array(needed, dtype=np.int32), np.array(given, dtype=np.int32)
            builder = flatbuffers.Builder(len(content) + 1024)
            builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
            interpreter = Interpreter(model_content=bytes(builder.Output()), num_threads=num_threads)
            interpreter.allocate_tensors()
            in_index = [d["index"] for d in interpreter.get_input_details()]  # in graph.inputs' order
            out_index = [d["index"] for d in interpreter.get_output_details()]
            self._steps.append(("litert", interpreter, list(zip(needed, in_index, strict=True)),
                                list(zip(given, out_index, strict=True))))

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """The model's outputs (in its output order) for its inputs (in its input order)."""
        values = dict(zip(self.inputs, inputs, strict=True))
        for step in self._steps:
            if step[0] == "custom":
                _, fn, options, ins, out = step
                values[out] = fn([values[t] for t in ins], options)
            else:
                _, interpreter, ins, outs = step
                for tensor, index in ins:
                    interpreter.set_tensor(index, values[tensor])
                interpreter.invoke()
                for tensor, index in outs:
                    values[tensor] = interpreter.get_tensor(index)
        return [values[t] for t in self.outputs]
