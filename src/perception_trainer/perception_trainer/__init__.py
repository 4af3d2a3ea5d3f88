"""Synthetic data, dataset readers (COCO, KITTI, lesson metadata.json), detector training, evaluation
and export to the model bundle.
"""
