"""Evaluation of generated captions: COCO caption metrics, CHAIR, hallucination reports and HTML galleries."""
