"""asrkt.decode"""
