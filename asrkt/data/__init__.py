"""asrkt.data"""
