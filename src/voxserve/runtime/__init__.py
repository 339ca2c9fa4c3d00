"""voxserve.runtime"""
