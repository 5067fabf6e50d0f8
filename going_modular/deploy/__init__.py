"""FoodVision Mini, deployed (notebook 08): the course's model as one ONNX file and a JSON of its preprocessing.

    export      torch side: the ONNX file (logits and every layer's attention), its preprocessing, int8 copies,
                and the measurements that compare them (benchmarks/deploy.py)
    serving     no torch: read the two files with ONNX Runtime, predict a photo, roll out its attention
    app         the Gradio app on top of ``serving``; with ``serving`` it is the whole of a Hugging Face Space
"""
