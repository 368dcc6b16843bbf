"""PyTorch consumers of an export, written (not copied) from the reference's layout: ConvNeXt
(official key names), mmdet FPN, the 1x1 heads and render_conv (`model.PerceptionRef`), the
reference key table (`reference_keys`), safe checkpoint I/O (`io`) and the golden-file check
(`verify`)."""
