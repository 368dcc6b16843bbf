"""Input pipeline: converted TFRecord shards -> globally sharded device batches with render rays.

schema.py    record contract with the converter (data_prep/convert/), versions 1.0.0 / 1.1.0
tfrecord.py  random-access TFRecord shards (header index, reads by offset, CRC32C checked)
clip.py      one record -> NumPy arrays (boxes included); JPEG decode + resize
validate.py  finite, plausible geometry of a parsed clip, naming the record and key
reader.py    dataset directory, metadata checks against the config, clip by index
rays.py      LiDAR filtering and render-ray sampling
masks.py     SparK random patch masks
bev.py       BEV occupancy targets rasterised from 3D boxes (the downstream probe)
pairs.py     matched point / view pairs of the CroCo and PointContrast objectives
example.py   one example as NumPy (also used by evaluation)
batch.py     the batch spec (keys, shapes, dtypes) and its sharding
pipeline.py  epoch order, worker threads, prefetch, global arrays, resumable state
"""
