"""voxserve.text"""
