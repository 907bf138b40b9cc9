"""Data, framework-free (no Lightning): COCO-format and VQA file readers and validators, vocabularies, image
files, feature caches and the built-in shapes generators."""
