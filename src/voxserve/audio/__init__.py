"""voxserve.audio"""
