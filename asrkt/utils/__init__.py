"""asrkt.utils"""
