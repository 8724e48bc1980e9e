"""asrkt.features"""
