"""Geometry shared by every layer above it: the voxel grid, the one trilinear sampler, rigid
transforms and pose chains, and camera rays recovered from projections."""
