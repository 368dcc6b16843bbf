"""The nuScenes -> TFRecord converter as a library (the CLI is data_prep/convert_nuscenes.py).

request (ConvertRequest: the options, validated) -> job (plan with the devkit, local worker
pool, finish) -> planner (devkit, one process) -> items (compact work items) -> writer
(devkit-free shard writers, local processes or Beam workers) -> tfds_meta (metadata written
last). beam_pipeline runs the same plan and finish around an Apache Beam pipeline.
"""
