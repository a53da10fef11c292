"""Deployment forms of muqkit's models: ONNX graphs run with onnxruntime (:mod:`muqkit.export.onnx`).

``onnx``, ``onnxruntime`` and ``onnxscript`` come with the ``onnx`` extra and are imported only here.
"""
