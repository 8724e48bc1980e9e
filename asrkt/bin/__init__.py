"""asrkt.bin"""
