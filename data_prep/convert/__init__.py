"""Building blocks of the nuScenes -> TFRecord converter (see data_prep/convert_nuscenes.py).

planner (devkit, one process) -> items (compact work items) -> writer (devkit-free shard
writers, local processes or Beam workers) -> tfds_meta (metadata written last).
"""
