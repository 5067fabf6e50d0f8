"""FoodVision Mini, deployed (notebook 08): the course's model as one ONNX file and a JSON of its preprocessing.
``export`` (torch) writes them (logits and every layer's attention), int8 copies and the measurements that compare
them (benchmarks/deploy.py); ``serving`` (no torch) reads them with ONNX Runtime, predicts a photo and rolls out its
attention; ``app`` is the Gradio app on top of ``serving``, and the two are the whole of a Hugging Face Space."""
