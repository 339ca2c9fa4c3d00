"""voxserve.tts"""
