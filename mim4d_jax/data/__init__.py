"""Input pipeline: converted TFRecord shards -> globally sharded device batches with render rays.

schema.py    record contract with data_prep.convert_nuscenes (owned by the lead)
tfrecord.py  random-access TFRecord shards (header index, reads by offset)
clip.py      one record -> NumPy arrays; JPEG decode + resize
reader.py    dataset directory, metadata checks against the config, clip by index
geometry.py  lidar2img, vol2ref and camera <-> volume transforms
rays.py      LiDAR filtering and render-ray sampling
masks.py     SparK random patch masks
example.py   one example as NumPy (also used by evaluation)
pipeline.py  epoch order, worker threads, prefetch, global arrays, resumable state
"""
