"""What leaves a run for its users: the student as ONNX checked by onnxruntime (``deploy``), its model card and
``load_student`` (``model_card``), and the synthetic set a trained generator makes (``export``)."""
