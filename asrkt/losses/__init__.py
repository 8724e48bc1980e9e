"""asrkt.losses"""
