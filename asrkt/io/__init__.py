"""asrkt.io"""
