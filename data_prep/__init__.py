"""Offline data preparation: the synthetic nuScenes world and the nuScenes -> TFRecord converter."""
