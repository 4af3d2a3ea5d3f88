"""Synthetic data, dataset readers (COCO, KITTI, metadata.json), detector training, evaluation
and export to the model bundle.
"""
