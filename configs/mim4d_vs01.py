r"""MIM4D "vs0.1" reference pre-training: ConvNeXt-S, 800x480 inputs, 6 cameras, T=3,
128x128x5 voxel grid, NeuS renderer with 72 + 24 samples and 2048 rays per camera.

  python -m mim4d_jax.train --config configs/mim4d_vs01.py --workdir gs://bucket/mim4d_vs01 \
      --config.data.dir=/data/nuscenes_clips

Variants (`--config configs/mim4d_vs01.py:B`): `S` (default, the reference), `B` (ConvNeXt-B).
Every key is documented in docs/configs.md. The reference trains 12 epochs of the 28,130
train key frames at a global batch of 8 (about 42k steps).
"""

import ml_collections

CAMERAS = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_FRONT_LEFT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT",
)


def get_config(arg=None) -> ml_collections.ConfigDict:
    variant = arg or "S"
    if variant not in ("S", "B"):
        raise ValueError(f"unknown variant {variant!r} of configs/mim4d_vs01.py (use S or B)")
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 42_000
    c.batch_size = 8  # global, over all processes and devices
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3
    c.log_every = 50
    c.image_log_every = 1000  # TensorBoard images of rendered RGB/depth; 0 = off
    # Mesh axis sizes; -1 takes the remaining devices. data x fsdp x tensor = device count.
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    # Logical parameter axis -> mesh axes. Unlisted logical names are replicated.
    c.sharding_rules = (
        ("embed", "fsdp"),
        ("mlp", "tensor"),
        ("heads", "tensor"),
        ("queries", "fsdp"),
    )

    c.data = ml_collections.ConfigDict()
    c.data.dir = ""  # converted dataset (data_prep.convert_nuscenes --out)
    c.data.train_split = "train"
    c.data.val_split = "val"
    c.data.cameras = CAMERAS
    c.data.frames = 3  # T: key frame + T-1 previous camera sweeps
    c.data.image_size = (800, 450)  # (W, H) after resizing the stored images
    c.data.pad_size = (800, 480)  # (W, H) model input, zero padded bottom/right
    c.data.num_rays = 2048  # rays per camera per target frame
    c.data.sky_fraction = 0.4  # top band excluded from top-up pixel rays
    c.data.top_up_stride = 4  # pixel spacing of top-up rays
    c.data.lidar_min_dist = 2.5  # metres, 3-D norm
    c.data.lidar_min_xy = 3.0  # metres, ground-plane norm
    c.data.lidar_max_xy = 50.0
    c.data.mask_ratio = 0.3  # SparK patch mask, fraction masked
    c.data.mask_patch = 32  # pixels
    c.data.num_parallel_calls = -1  # input worker threads; -1 = one per CPU core
    c.data.prefetch = 2  # device batches in flight

    c.model = ml_collections.ConfigDict()
    c.model.backbone = variant  # ConvNeXt variant: S, B, tiny, nano
    c.model.drop_path_rate = 0.2
    c.model.layer_scale_init = 1e-6
    c.model.frozen_stages = 1  # stem + stages.0 frozen (reference)
    c.model.fpn_channels = 128
    c.model.fpn_start_level = 1
    c.model.fpn_num_outs = 4
    c.model.depth_bins = 64
    c.model.depth_max = 64.0  # metres; bins are d/depth_max in (0, 1)
    c.model.pc_range = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)  # x0, y0, z0, x1, y1, z1 metres
    c.model.voxel_size = (0.8, 0.8, 1.6)  # -> X, Y, Z = 128, 128, 5
    c.model.render_channels = 32
    c.model.compute_dtype = "bfloat16"  # backbone, neck, view transform
    c.model.history = ml_collections.ConfigDict()
    c.model.history.embed_dims = 128
    c.model.history.reduction = 2  # long branch uses embed_dims / reduction
    c.model.history.num_layers = 2
    c.model.history.long_heads = 2
    c.model.history.short_heads = 4
    c.model.history.num_points = 4
    c.model.history.ffn_dims = 256

    c.render = ml_collections.ConfigDict()
    c.render.num_samples = 72  # stratified
    c.render.num_importance = 24  # NeuS up-sampling
    c.render.up_sample_inv_s = 64.0
    c.render.hidden_dims = 16
    c.render.sdf_blocks = 5
    c.render.rgb_blocks = 3
    c.render.geo_dims = 16
    c.render.variance_init = 0.3
    c.render.near_min = 1.0  # metres
    c.render.chunk_rays = 4096  # rays per rematerialised chunk
    c.render.rgb_weight = 10.0
    c.render.depth_weight = 10.0

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 4e-4
    c.optim.weight_decay = 0.01
    c.optim.backbone_lr_mult = 0.1
    c.optim.grad_clip = 35.0
    c.optim.warmup_steps = 500
    c.optim.warmup_start_factor = 1.0 / 3.0
    c.optim.min_lr_ratio = 1e-3
    c.optim.frozen_prefixes = ()  # extra dotted parameter prefixes that never update
    c.optim.ema_decay = 0.0  # 0 = no EMA; the reference uses 2e-4 momentum = 0.9998

    # Controls for "does it learn from the images?": the image-blind twin sees zeros (the
    # dataset mean) instead of every input image, with all targets untouched.
    c.ablation = ml_collections.ConfigDict()
    c.ablation.blind_images = False

    c.init = ml_collections.ConfigDict()
    # Required: the .npz of ImageNet ConvNeXt weights (python -m mim4d_jax.import_torch), or
    # "none" to train from random init on purpose. Unset is an error naming where to get them.
    c.init.backbone = ""

    c.resume = ml_collections.ConfigDict()
    # A damaged newest checkpoint stops the run; True resumes from the newest intact step
    # instead (the damaged steps are moved to <workdir>/damaged_checkpoints/).
    c.resume.fallback = False

    # Pre-training objectives and their weights (mim4d_jax/objectives/, docs/objectives.md).
    # 0 switches an objective off; any combination trains in one step. Each objective with a
    # weight > 0 adds its heads to the model and its keys to the batch.
    c.objectives = ml_collections.ConfigDict(dict(mim4d=1.0, croco=0.0, pointcontrast=0.0))
    # CroCo-style cross-view completion: view 1 masked at croco.mask_ratio, view 2 unmasked,
    # a cross-attention decoder predicts view 1's masked patches from both.
    c.croco = ml_collections.ConfigDict()
    c.croco.mask_ratio = 0.9  # fraction of view-1 patches masked (drawn on device)
    c.croco.num_pairs = 6  # view pairs per sample
    c.croco.spatial_pairs = False  # also pair ring-neighbour cameras at the key frame
    c.croco.min_overlap = 0.3  # fraction of view-1 LiDAR points also inside view 2
    c.croco.dec_dims = 512
    c.croco.dec_depth = 8
    c.croco.dec_heads = 16
    c.croco.mlp_ratio = 4
    c.croco.rope_freq = 100.0  # 2D RoPE base frequency
    c.croco.norm_pix_loss = True  # MSE on per-patch normalised pixels
    # PointContrast-style PointInfoNCE between matched static LiDAR points of frames 0 and k.
    c.pointcontrast = ml_collections.ConfigDict()
    c.pointcontrast.num_pairs = 4096  # matched points per sample
    c.pointcontrast.temperature = 0.4
    c.pointcontrast.hidden_dims = 64  # projection head
    c.pointcontrast.out_dims = 32
    c.pointcontrast.max_color_diff = 40.0  # static check: mean |RGB| difference (0..255)

    c.profile = ml_collections.ConfigDict()
    c.profile.start_step = -1  # -1 = no jax.profiler trace
    c.profile.num_steps = 3
    return c
