"""asrkt.kernels"""
