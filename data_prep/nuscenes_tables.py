"""The nuScenes on-disk format's table names (no heavy imports: the generator uses it)."""

# The 13 JSON tables under <dataroot>/<version>/: the converter reads them, the synthetic
# world writes them.
NUSCENES_TABLES = (
    "category",
    "attribute",
    "visibility",
    "instance",
    "sensor",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
    "map",
)
