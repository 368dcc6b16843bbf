"""The synthetic world behind data_prep.synthetic_nuscenes: scene, sensors, ray casting, tables."""
