"""PyTorch interop: export to the reference's key names, import of ImageNet ConvNeXt weights,
and the PyTorch reference modules that verify an export."""
